"""Patient ids from case ids, shared by the readers."""

from __future__ import annotations

import re

from EchoSynthLib.errors import InputError

# "MITEA_001_scan1_ED" -> "MITEA_001": a trailing phase, optionally after a scan/frame number. The number
# needs its scan/frame/t prefix: a bare one is the patient's own ("case_001_ED" -> "case_001").
_DEFAULT_PATIENT = re.compile(r"^(.*?)(?:_(?:scan|frame|t)\d+)?_(?:ED|ES)$", re.IGNORECASE)


def patient_id_for(case_id: str, pattern: str | None = None) -> str:
    """The patient a case belongs to: group 1 of ``pattern`` if given, else the id without a phase suffix."""
    if pattern is None:
        match = _DEFAULT_PATIENT.match(case_id)
        return match.group(1) if match and match.group(1) else case_id
    try:
        match = re.match(pattern, case_id)
    except re.error as error:
        raise InputError(
            f"--patient-pattern '{pattern}' is not a valid regular expression: {error}"
        ) from None
    if not match or not match.groups() or not match.group(1):
        raise InputError(f"--patient-pattern '{pattern}' has no group 1 match in case id '{case_id}'")
    return match.group(1)
