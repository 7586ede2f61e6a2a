"""The one code-width rule: every layer that takes a width agrees with it."""

from __future__ import annotations

import numpy as np
import pytest

from models.autoencoder import AutoencoderConfig
from models.code_width import CODE_WIDTHS
from service.index.errors import CodeWidthError
from service.index.layout import check_bits
from service.schemas import CollectionCreate
from training.config import TrainConfig

VALID = [8, 16, 24, 64, 120, 128]
INVALID: list[object] = [0, 4, 12, 136, 256, -8, True, 32.0, "32", None]


@pytest.mark.parametrize("bits", VALID)
def test_valid_widths_pass_everywhere(bits: int) -> None:
    assert CODE_WIDTHS.problem(bits) is None and CODE_WIDTHS.check(bits) == bits
    assert CODE_WIDTHS.check(np.int64(bits)) == bits
    assert check_bits(bits) == bits
    assert TrainConfig(bits=bits).bits == bits
    assert AutoencoderConfig(input_dim=4, hidden_dims=(3,), n_bits=bits).n_bits == bits
    assert CollectionCreate(name="c", modality="text", bits=bits).bits == bits


@pytest.mark.parametrize("bits", INVALID)
def test_invalid_widths_fail_everywhere_with_the_rule(bits: object) -> None:
    problem = CODE_WIDTHS.problem(bits)
    assert problem is not None and "multiple of 8 in 8..128" in problem
    with pytest.raises(ValueError, match="multiple of 8 in 8..128"):
        CODE_WIDTHS.check(bits)
    with pytest.raises(CodeWidthError):
        check_bits(bits)


@pytest.mark.parametrize("bits", [12, 136, 4])
def test_invalid_whole_widths_suggest_the_nearest_valid_one(bits: int) -> None:
    problem = CODE_WIDTHS.problem(bits)
    assert problem is not None
    suggested = int(problem.rsplit("try ", 1)[1])
    assert CODE_WIDTHS.problem(suggested) is None
    with pytest.raises(ValueError):
        TrainConfig(bits=bits)
