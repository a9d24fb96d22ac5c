"""Hugging Face Hub access with errors a researcher can act on.

Tokens come from huggingface_hub itself (`HF_TOKEN` or `hf auth login`); we
never take one on the command line and never print one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from featgraph.errors import BadInput, FeatgraphError


@dataclass(frozen=True)
class HubRef:
    """`owner/name[@revision]` split into its parts."""

    repo_id: str
    revision: str | None = None

    @classmethod
    def parse(cls, ref: str) -> HubRef:
        repo, _, rev = ref.partition("@")
        parts = repo.split("/")
        if len(parts) != 2 or not all(parts):
            raise BadInput(f"{ref!r} is not a Hub repo id: use OWNER/NAME[@REVISION] or a local path")
        return cls(repo, rev or None)


def download(ref: HubRef, filename: str) -> Path:
    """One file from the Hub through its cache; translate failures into one line."""
    from huggingface_hub import errors as hfe
    from huggingface_hub import hf_hub_download

    where = f"{ref.repo_id}/{filename}" + (f"@{ref.revision}" if ref.revision else "")
    try:
        return Path(hf_hub_download(ref.repo_id, filename, revision=ref.revision))
    except hfe.GatedRepoError:
        raise FeatgraphError(
            f"{ref.repo_id} is gated: accept the licence on https://huggingface.co/{ref.repo_id} "
            "and log in (`hf auth login`) or set HF_TOKEN"
        ) from None
    except hfe.RepositoryNotFoundError:
        raise BadInput(
            f"Hub repo {ref.repo_id} not found (or private): check the name, or log in with `hf auth login`"
        ) from None
    except hfe.RevisionNotFoundError:
        raise BadInput(f"revision {ref.revision!r} not found in {ref.repo_id}") from None
    except hfe.RemoteEntryNotFoundError:
        raise BadInput(f"{where} does not exist on the Hub: check the path") from None
    except (hfe.LocalEntryNotFoundError, hfe.OfflineModeIsEnabled):
        raise FeatgraphError(
            f"cannot fetch {where}: offline and not in the Hugging Face cache; "
            "connect to the internet or pass a local path"
        ) from None
    except hfe.HfHubHTTPError as e:
        raise FeatgraphError(f"Hub request for {where} failed: {e.__class__.__name__}") from None


def list_files(ref: HubRef, prefix: str) -> list[str]:
    """Files of a repo under `prefix` (used to resolve canonical SAE ids)."""
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hfe

    try:
        files = HfApi().list_repo_files(ref.repo_id, revision=ref.revision)
    except hfe.GatedRepoError:
        raise FeatgraphError(f"{ref.repo_id} is gated: accept its licence and `hf auth login`") from None
    except hfe.RepositoryNotFoundError:
        raise BadInput(f"Hub repo {ref.repo_id} not found") from None
    except Exception as e:  # network errors vary by transport
        raise FeatgraphError(
            f"cannot list {ref.repo_id} on the Hub ({e.__class__.__name__}): "
            "pass an explicit path such as REPO/layer_12/width_16k/average_l0_82"
        ) from None
    return [f for f in files if f.startswith(prefix)]


def snapshot_revision(path: Path) -> str | None:
    """The commit hash of a file in the HF cache (`…/snapshots/<sha>/…`)."""
    parts = path.parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None
