"""The answer's length as a scorer: a baseline every model scorer is measured against, and a fair prior.

On human rankings of replies the longer reply is preferred most of the time; combined with a
model scorer (scoring.scorers with weights) it keeps a terse non-answer from ranking high. The
length is in characters, log-scaled so a few very long answers do not flatten the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mdaq_spark import schema as S
from mdaq_spark.scoring.base import Scorer, register
from mdaq_spark.stages.base import digest


@register("length")
@dataclass(frozen=True)
class LengthScorer(Scorer):
    def fingerprint(self, encodings: str) -> str:
        return digest("length", "log1p(characters of the response)")

    def score(self, model: Any, batch: pa.RecordBatch) -> np.ndarray:
        chars = pc.utf8_length(batch.column(S.RESPONSE)).to_numpy(zero_copy_only=False)
        return np.log1p(np.nan_to_num(chars.astype(np.float64)))
