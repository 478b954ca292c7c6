"""Every file of the hostile corpus is refused by ``mgmp pool add`` with one line and exit 2, with no side effect."""
import shutil

import pytest

from mgmp.cli import main
from model_pool.chaos import STATE_DICT_ARGS, hostile_corpus, snapshot
from model_pool.verify import verify_pool


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return root / "pwned", hostile_corpus(root / "files", root / "pwned")


def test_corpus_covers_the_issue_list(corpus):
    _, files = corpus
    assert len(files) >= 20
    for kind in ("reduce_zip", "reduce_legacy", "reduce_raw", "safetensors_truncated", "safetensors_oversized_header",
                 "safetensors_lying_header", "symlink_out_of_dir", "json_num_classes_str", "json_files_traversal"):
        assert kind in files


@pytest.mark.parametrize("name", ["reduce_zip", "reduce_legacy", "reduce_raw", "not_tensors", "empty",
                                  "safetensors_truncated", "safetensors_oversized_header", "safetensors_lying_header",
                                  "weights_altered", "json_num_classes_str", "json_num_classes_bool", "json_arch_list",
                                  "json_arch_unknown", "json_relation_unknown", "json_input_kind", "json_arch_kwargs_bogus",
                                  "json_parents_wrong_type", "json_files_traversal", "json_not_an_object", "json_invalid",
                                  "symlink_out_of_dir"])
def test_hostile_file_is_refused_without_side_effects(name, corpus, tiny_pool, tmp_path, capsys):
    marker, files = corpus
    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    before = snapshot(pool)
    path = files[name]
    extra = STATE_DICT_ARGS if path.suffix == ".pt" else []
    capsys.readouterr()
    assert main(["pool", "add", str(pool), str(path), "--id", "suspect", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not marker.exists()  # no pickled code ran
    assert snapshot(pool) == before  # no row, no file, no temp dir left
    assert verify_pool(pool).ok


def test_pickles_get_exactly_one_stderr_line_from_the_real_cli(corpus, tiny_pool, tmp_path):
    """As a user sees it: no library warning around the error line (pytest's warning capture hides those in-process)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    marker, files = corpus
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    # one process (each costs seconds of imports); the other pickle formats are refused in-process above
    r = subprocess.run([sys.executable, "-m", "mgmp.cli", "pool", "add", str(pool), str(files["reduce_legacy"]), "--id",
                        "x", *STATE_DICT_ARGS], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("mgmp: error:"), r.stderr
    assert not marker.exists()
