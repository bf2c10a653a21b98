"""The sample record: what every dataset adapter produces from an annotation sheet."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SampleRecord:
    """One micro-expression sample as the annotation sheet describes it (facts only, no class map)."""

    dataset: str                 # casme2 | samm | casme3 | smic | mmew | manifest
    subject: str                 # as the sheet writes it, e.g. '01' (CASME II), '006' (SAMM)
    sample_id: str               # e.g. 'EP02_01f', '006_1_2'
    onset: int | None            # frame numbers (None when the sheet gives paths only)
    apex: int | None
    offset: int | None
    onset_path: Path | None      # None when the frame file could not be found
    apex_path: Path | None
    emotion: str                 # raw emotion string from the sheet
    aus_raw: str                 # raw AU string from the sheet
    aus: tuple[int, ...]         # parsed AUs inside the 21-AU vocabulary
    aus_outside: tuple[str, ...] = ()   # parsed AU codes outside the vocabulary (kept, counted)
    apex_estimated: bool = False        # apex missing in the sheet ('/'): middle of onset..offset
    aus_known: bool = True              # False when the dataset codes no AUs (SMIC): unknown, not "none active"
    row: int | None = None              # 1-based row in the sheet, for error messages
    warnings: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Unique id within a dataset: subject/sample."""
        return f"{self.subject}/{self.sample_id}"
