"""The registry's two lists of formats agree: what it probes as accepted is what IMG-FORMAT
names as accepted (the list users read in its finding), so adding a format to one and not the
other fails here."""

from __future__ import annotations

from imageport.formats import registry


def test_the_accepted_list_names_every_accepted_format_and_raw() -> None:
    probed = {spec.name for spec in registry.FORMATS if spec.accepted}
    assert sorted(registry.ACCEPTED_FORMATS) == sorted({*probed, "raw"})
    assert len(set(registry.ACCEPTED_FORMATS)) == len(registry.ACCEPTED_FORMATS)
