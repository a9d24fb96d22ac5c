"""Things people look at — plots, interactive graph pages, the report page, text tables — built from data the caller prepared."""
