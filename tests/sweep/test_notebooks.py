"""Both notebooks execute headless (nbclient) and write their figures."""
import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[test]' (nbformat, nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

from sweep_testing import REPO, subprocess_env  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def execute(name, monkeypatch, **env) -> list[str]:
    """Runs notebooks/<name> in a kernel with `env`; returns every text output."""
    for key, value in subprocess_env(**env).items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
    return texts


def test_results_notebook(micro_sweep, tmp_path, monkeypatch):
    texts = execute("results.ipynb", monkeypatch, T2T_SWEEP_DIR=str(micro_sweep),
                    T2T_FIGURES_DIR=str(tmp_path))
    table = next(t for t in texts if t.startswith("| point"))
    assert table.splitlines()[2].startswith("| edec6.span | table2_enc_dec_6layer | c4_span_corruption |")
    for figure in ("pretrain_loss.png", "task_scores.png"):
        assert (tmp_path / figure).read_bytes()[:8] == PNG


def test_objectives_notebook(data_dir, tmp_path, monkeypatch):
    texts = execute("objectives.ipynb", monkeypatch, T2T_DATA_DIR=str(data_dir), T2T_FIGURES_DIR=str(tmp_path))
    assert texts[0] == ("11 tokens: ['Thank', 'you', 'for', 'inviting', 'me', 'to', 'your', 'party', "
                        "'last', 'week', '.']\n")
    rows = {line.split()[0]: line for line in texts[1].splitlines()[2:] if line.strip()}
    assert set(rows) >= {"span_corruption", "iid_denoise", "drop_tokens", "bert_t5", "mass", "deshuffle",
                         "prefix_lm", "causal_lm"}
    assert "<extra_id_0>" in rows["span_corruption"] and "<extra_id_0>" in rows["iid_denoise"]
    assert (tmp_path / "objective_lengths.png").read_bytes()[:8] == PNG
