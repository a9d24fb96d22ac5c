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


# How long to wait for the Hub before saying it cannot be reached (HF_HUB_ETAG_TIMEOUT, when set, wins).
PROBE_TIMEOUT = 3.0


def download(ref: HubRef, filename: str, local_fix: str = "pass a local path") -> Path:
    """One file from the Hub through its cache; translate failures into one line.

    `local_fix` says how to do without the Hub (`pass a local model directory (--model PATH)`).
    """
    from huggingface_hub import errors as hfe
    from huggingface_hub import hf_hub_download

    where = f"{ref.repo_id}/{filename}" + (f"@{ref.revision}" if ref.revision else "")
    connect = "connect to the internet (and log in with `hf auth login` or HF_TOKEN for gated models)"
    try:
        _check_reachable(ref, filename)
        return Path(hf_hub_download(ref.repo_id, filename, revision=ref.revision))
    except _Unreachable as e:
        raise FeatgraphError(f"cannot reach the Hugging Face Hub for {where} ({e}) and it is not in the cache: "
                             f"{connect}, or {local_fix}") from None
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
        if _offline():
            raise FeatgraphError(f"{where} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: unset it and "
                                 f"{connect}, or {local_fix}") from None
        raise FeatgraphError(f"cannot fetch {where}: the Hub cannot be reached and it is not in the cache: "
                             f"{connect}, or {local_fix}") from None
    except hfe.HfHubHTTPError as e:
        raise FeatgraphError(f"Hub request for {where} failed: {e.__class__.__name__}") from None


class _Unreachable(Exception):
    pass


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _check_reachable(ref: HubRef, filename: str) -> None:
    """Raise _Unreachable at once when the Hub cannot be reached and the file is not cached.

    huggingface_hub retries a file it has no copy of for ~25 s (five backoffs) before failing; one
    short request first turns "no network" into one line within seconds. In offline mode, or when the
    file is cached, hf_hub_download needs no network and is left to it.
    """
    import os

    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub import errors as hfe

    if _offline() or isinstance(try_to_load_from_cache(ref.repo_id, filename, revision=ref.revision), str):
        return
    timeout = constants.HF_HUB_ETAG_TIMEOUT if os.environ.get("HF_HUB_ETAG_TIMEOUT") else PROBE_TIMEOUT
    try:
        get_hf_file_metadata(hf_hub_url(ref.repo_id, filename, revision=ref.revision), timeout=timeout)
    except hfe.HfHubHTTPError:
        return  # the Hub answered: hf_hub_download reports what it said
    except Exception as e:  # transports raise their own connection and timeout errors
        raise _Unreachable(e.__class__.__name__) from None


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
