"""Record the outputs nbval checks: execute a notebook with papermill, keep only marked outputs.

    .venv/bin/python tools/record_notebook_outputs.py notebooks/01_gate_properties.ipynb

Cells marked `# NBVAL_CHECK_OUTPUT` keep their (text) outputs and an execution count in the source
notebook; every other output and execution count is stripped (STYLE §8). Figures go to a temporary directory.
"""

import os
import sys
import tempfile
from pathlib import Path

import nbformat
import papermill

MARK = "# NBVAL_CHECK_OUTPUT"


def record(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SAPO_FIGURES_DIR"] = tmp
        os.environ.setdefault("SAPO_RUNS_DIR", tmp)
        executed = papermill.execute_notebook(str(path), str(Path(tmp) / path.name), cwd=str(path.parent),
                                              progress_bar=False)
    source = nbformat.read(path, as_version=4)
    ran = [c for c in executed.cells
           if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
    code = [c for c in source.cells if c.cell_type == "code"]
    assert len(ran) == len(code), "executed notebook does not line up with the source"
    for number, (cell, done) in enumerate(zip(code, ran), start=1):
        keep = cell.source.lstrip().startswith(MARK)
        cell.execution_count = number if keep else None  # nbval skips checked cells that look unrun
        cell.outputs = [o for o in done.outputs if o.output_type == "stream"] if keep else []
        for out in cell.outputs:
            out.pop("execution_count", None)
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    for cell in source.cells:
        cell.metadata.pop("papermill", None)
    source.metadata.pop("papermill", None)
    nbformat.write(source, path)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        record(Path(arg))
        print("recorded", arg)
