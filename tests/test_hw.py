"""nbkit.core.hw: one parser for every way the course writes an architecture."""

import pytest

from nbkit.core import hw


@pytest.mark.parametrize("written", ["sm_80", "SM_80", " compute_80 ", "8.0", "80", (8, 0)])
def test_every_spelling_of_an_architecture_is_read(written):
    assert hw.compute_capability(written) == (8, 0) and hw.sm_name(written) == "sm_80"


def test_two_digit_majors():
    assert hw.sm_name("sm_100") == "sm_100" and hw.compute_capability("12.0") == (12, 0)
    assert hw.compute_capability("120") == (12, 0)


@pytest.mark.parametrize("bad", ["sm80", "8", "sm_8", "8.10", "", "ampere", (8,), (8, 0, 0), ("8", "0"), 80, None])
def test_anything_else_is_refused(bad):
    with pytest.raises(ValueError, match="not an architecture"):
        hw.compute_capability(bad)


def test_the_course_architectures_are_named_once():
    assert hw.ARCHS == tuple(hw.sm_name(a) for a in hw.ARCHS) and len(set(hw.ARCHS)) == len(hw.ARCHS)
