import pytest

from model_pool.card import ModelCard
from model_pool.errors import MgmpError
from model_pool.registry import PoolRegistry


def _card(*parents):
    return ModelCard(arch="mlp", num_classes=10, input={"kind": "image"}, parents=list(parents),
                     relation="finetune" if parents else "scratch", sha256="0" * 64)


@pytest.fixture
def reg(tmp_path):
    r = PoolRegistry(tmp_path / "p", create=True)
    for mid, parents in [("root", []), ("a", ["root"]), ("b", ["a"]), ("c", ["a"]), ("other", []), ("m", ["b", "other"])]:
        r.add(mid, _card(*parents))
    yield r
    r.close()


def test_lineage_queries(reg):
    assert reg.parents("m") == ["b", "other"]
    assert reg.ancestors("m") == {"b": 1, "other": 1, "a": 2, "root": 3}
    assert reg.descendants("root") == {"a": 1, "b": 2, "c": 2, "m": 3}
    assert reg.roots() == ["root", "other"] or set(reg.roots()) == {"root", "other"}
    assert reg.chain("m") == ["m", "b", "a", "root"]
    assert reg.family("c") == {"root"} and reg.family("m") == {"root", "other"}
    assert reg.related("root", "b") and not reg.related("b", "c")
    assert set(reg.families()) == {"root", "other"}


def test_add_refuses_duplicates_and_unknown_parents(reg):
    with pytest.raises(MgmpError, match="already registered"):
        reg.add("a", _card("root"))
    with pytest.raises(MgmpError, match="unknown parent"):
        reg.add("z", _card("ghost"))
    assert not reg.has("z")  # the failed transaction left nothing behind


def test_scores_cache_roundtrip(reg):
    assert reg.get_score("a", "b", "zest", "h") is None
    reg.put_score("a", "b", "zest", "h", 0.25, 1.5, {"n": 3})
    got = reg.get_score("a", "b", "zest", "h")
    assert got["value"] == 0.25 and got["extra"] == {"n": 3}


def test_not_a_pool(tmp_path):
    with pytest.raises(MgmpError, match="not a model pool"):
        PoolRegistry(tmp_path)
