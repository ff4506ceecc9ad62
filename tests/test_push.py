"""`siamese push` against a local stand-in for the hub's HTTP API (tests/hub_server.py): exactly the files it
should, a card whose front matter parses as the hub expects; offline or refused, one line."""

import pytest
import yaml
from hub_server import HubServer

from siamese.cli import main


@pytest.fixture
def online(monkeypatch):
    """The tests run with HF_HUB_OFFLINE=1; a push to the stand-in is the one thing let through."""
    from huggingface_hub import constants
    from huggingface_hub.utils import reset_sessions

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    reset_sessions()
    yield
    reset_sessions()


def test_push_uploads_the_model_its_card_and_the_export(
    tiny_trained, tiny_export, online, monkeypatch, capsys
):
    with HubServer() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub.url)
        assert main(["push", str(tiny_trained), "me/tiny", "--export", str(tiny_export), "--private"]) == 0
        assert (
            main(["push", str(tiny_trained), "me/tiny", "--revision", "v2"]) == 0
        )  # the repository exists: kept
    assert "pushed: " in capsys.readouterr().out
    assert (
        "POST /api/models/me/tiny/branch/v2" in hub.requests
        and "POST /api/models/me/tiny/commit/v2" in hub.requests
    )
    repo = hub.repos["me/tiny"]
    files = repo["branches"]["main"]
    local = {p.relative_to(tiny_trained).as_posix() for p in tiny_trained.rglob("*") if p.is_file()}
    exported = {
        f"onnx/{p.relative_to(tiny_export).as_posix()}" for p in tiny_export.rglob("*") if p.is_file()
    }
    assert set(files) == (local | exported) - {".siamese-artifact", "onnx/.siamese-artifact"} | {"README.md"}
    assert files["model.safetensors"] == (tiny_trained / "model.safetensors").read_bytes()
    assert files["onnx/model.onnx"] == (tiny_export / "model.onnx").read_bytes() and repo["private"]
    card = files["README.md"].decode()
    header = yaml.safe_load(card.split("---\n")[1])
    assert (
        header["library_name"] == "sentence-transformers" and header["pipeline_tag"] == "sentence-similarity"
    )
    assert (
        {"sentence-transformers", "vespa"} <= set(header["tags"])
        and header["license"]
        and header["base_model"]
    )
    assert "# " in card.split("---\n", 2)[2]  # the card itself follows


def test_a_push_refused_or_offline_is_one_line(tiny_trained, online, monkeypatch, capsys):
    with HubServer(refuse=401) as hub:
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub.url)
        assert main(["push", str(tiny_trained), "me/tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "HTTP 401: not authorised" in err and "Traceback" not in err
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    from huggingface_hub.utils import reset_sessions

    reset_sessions()
    assert main(["push", str(tiny_trained), "me/tiny"]) == 2
    assert "HF_HUB_OFFLINE=1" in capsys.readouterr().err
