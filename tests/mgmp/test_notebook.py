"""The quickstart notebook runs end to end through the Python API (on the tiny MGMP pool, 1 epoch)."""
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# the notebook's scores with small budgets (the suite checks the notebook runs, not the papers' defaults)
CHEAP = {"closeness": {"k": 20, "candidates": 200, "n_lineage": 1, "n_independent": 1},
         "zest": {"n_points": 8, "n_masks": 64}, "basin": {"n_points": 64}}


@pytest.mark.slow
def test_quickstart_notebook_executes(mgmp_pool, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from tests.conftest import MGMP_PLAN

    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "POOL_DIR" in params[0].source
    pool = tmp_path / "pools" / "digits"
    shutil.copytree(mgmp_pool, pool)  # a finished pool: build_pool only checks it
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(MGMP_PLAN))
    params[0].source = (f"from pathlib import Path\nPOOL_DIR = Path({str(pool)!r})\nPLAN = Path({str(tmp_path / 'plan.yaml')!r})\n"
                        "EPOCHS = 1\nEPISODES = 20\nWORKERS = 1\nSCORE_PARAMS = " + repr(CHEAP))
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "built 0, already there 13, failed 0" in text  # the pool was reused, not rebuilt
    assert "11 gram DNA vectors indexed" in text and "11 weights DNA vectors indexed" in text
    assert "hom-2-b: " in text and "non-2-b: " in text  # both suspects answered
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert (tmp_path / "figures" / "dna_tsne.png").is_file()
