"""Where pulled features go: checkpointed parts while pulling, one atomic file at the end.

While a pull runs, finished rows are committed as numbered part files in a hidden sibling
folder (`.<output name>.partial/`) together with `state.json`, which records what the pull
is (input fingerprint, model, version, code size) and how many rows are done. A pull that
is interrupted leaves only that folder; started again with the same arguments, it checks
the state and continues after the last committed row, so no row is lost or repeated. The
output file itself appears only when every row is in, by rename.

Outputs: `.npy` (float32 [rows, code], rows in input order) or `.parquet` (an `id` column,
then `code_0` … `code_{k-1}`).
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np

from tfsp.core.errors import UserError

FORMATS = (".npy", ".parquet")
_STATE = "state.json"


def check_output(path: Path) -> None:
    """Refuse an output we cannot write before any request is sent."""
    if path.suffix not in FORMATS:
        raise UserError(f"output {path}: the file name must end in .npy or .parquet")
    if not path.parent.is_dir():
        raise UserError(f"output folder {path.parent} does not exist")


class FeatureStore:
    """Checkpointed writer of one pull; see the module docstring for the layout."""

    def __init__(self, output: Path, identity: dict) -> None:
        self.output = output
        self.partial = output.parent / f".{output.name}.partial"
        self._identity = identity
        self.rows_done = 0
        self._parts: list[str] = []

    def resume_or_start(self) -> int:
        """Continue a matching interrupted pull, or start anew; returns rows already done."""
        state_file = self.partial / _STATE
        if state_file.exists():
            state = json.loads(state_file.read_text())
            if state["identity"] == self._identity:
                self.rows_done, self._parts = state["rows_done"], state["parts"]
                return self.rows_done
            # Another input, model or version: its rows must not be mixed into this output.
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True, exist_ok=True)
        self._write_state()
        return 0

    def discard_if_empty(self) -> None:
        """Remove the checkpoint of a pull that stopped before committing a row: it holds
        nothing to resume, and a hidden folder left behind would only puzzle."""
        if self.rows_done == 0:
            shutil.rmtree(self.partial, ignore_errors=True)

    def commit(self, ids: list, codes: np.ndarray) -> None:
        """Durably add the next rows (in order) to the checkpoint."""
        name = f"part-{self.rows_done:010d}.npz"
        tmp = self.partial / f"{name}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, ids=np.asarray(ids), codes=np.asarray(codes, dtype=np.float32))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.partial / name)
        self._parts.append(name)
        self.rows_done += len(codes)
        self._write_state()

    def _write_state(self) -> None:
        tmp = self.partial / f"{_STATE}.tmp"
        tmp.write_text(
            json.dumps(
                {"identity": self._identity, "rows_done": self.rows_done, "parts": self._parts}
            )
        )
        os.replace(tmp, self.partial / _STATE)

    def _read_parts(self):  # noqa: ANN202 - a generator of (ids, codes)
        for name in self._parts:
            with np.load(self.partial / name) as part:
                yield part["ids"], part["codes"]

    def finish(self, code_size: int) -> None:
        """Assemble the parts into the output file (streaming), then rename it into place."""
        tmp = self.output.parent / f".{self.output.name}.tmp"
        if self.output.suffix == ".npy":
            array = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.float32, shape=(self.rows_done, code_size)
            )
            row = 0
            for _, codes in self._read_parts():
                array[row : row + len(codes)] = codes
                row += len(codes)
            array.flush()
            del array
        else:
            self._write_parquet(tmp, code_size)
        os.replace(tmp, self.output)
        shutil.rmtree(self.partial)

    def _write_parquet(self, tmp: Path, code_size: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for ids, codes in self._read_parts():
                columns = {"id": pa.array(ids.tolist())}
                columns.update({f"code_{i}": pa.array(codes[:, i]) for i in range(code_size)})
                table = pa.table(columns)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
