"""The one rule for valid code widths, used by the models, training, the API and the index.

Codes pack into whole bytes, and the Hamming index holds at most two 64-bit words per code.
"""

from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass


@dataclass(frozen=True)
class CodeWidths:
    step: int = 8
    smallest: int = 8
    largest: int = 128

    def problem(self, bits: object) -> str | None:
        """Why ``bits`` is not a valid code width, or None when it is."""
        whole = isinstance(bits, numbers.Integral) and not isinstance(bits, bool)
        n = operator.index(bits) if whole else 0  # type: ignore[arg-type]
        if whole and n % self.step == 0 and self.smallest <= n <= self.largest:
            return None
        rule = (
            f"bits must be a multiple of {self.step} in {self.smallest}..{self.largest}"
            f" (16, 32, 64, 128), got {bits!r}"
        )
        if not whole:
            return rule
        up = -(-n // self.step) * self.step
        return f"{rule}; try {min(max(up, self.smallest), self.largest)}"

    def check(self, bits: object) -> int:
        """``bits`` itself when valid; ValueError naming the rule otherwise."""
        problem = self.problem(bits)
        if problem is not None:
            raise ValueError(problem)
        return operator.index(bits)  # type: ignore[arg-type]


CODE_WIDTHS = CodeWidths()
