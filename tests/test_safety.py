"""Nothing the user owns is deleted, no write lands where it should not, no stale index answers silently,
and every damaged input ends in one line (exit 2), not a traceback. Each test reproduces a defect found
by trying the CLI as a new user would (2026-11-27)."""

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, needs_java, toy_pairs
from test_vespa_package import fake_export

from common.atomic import MARKER, atomic_dir
from common.data import DataError, Doc, read_corpus, read_qrels
from exporter.manifest import Manifest, ManifestError
from siamese.cli import main

# ------------------------------------------------------------------ --force and output directories


@pytest.fixture
def run_dir(tiny_trained, tmp_path):
    """A copy of a training run (RUN/train/model), so a test that went wrong could not hurt the shared one."""
    run = tmp_path / "RUN"
    shutil.copytree(tiny_trained, run / "train" / "model")
    return run


def test_export_force_never_removes_the_model_it_exports(run_dir, capsys):
    model = run_dir / "train" / "model"
    before = sorted(p.name for p in model.iterdir())
    assert main(["export", str(model), str(run_dir), "--force"]) == 2
    assert "holds or lies inside the input" in capsys.readouterr().err
    assert sorted(p.name for p in model.iterdir()) == before


def test_force_refuses_a_directory_siamese_did_not_write(tiny_export, tmp_path, capsys):
    mine = tmp_path / "DIR"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    assert main(["app", "build", str(tiny_export), str(mine), "--force", "--no-check"]) == 2
    assert "not something siamese wrote" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "the user's own file" and len(list(mine.iterdir())) == 1


def test_force_replaces_a_previous_artefact_of_the_same_kind_only(tiny_export, tmp_path, capsys):
    app = tmp_path / "app"
    assert main(["app", "build", str(tiny_export), str(app), "--no-check"]) == 0
    assert main(["app", "build", str(tiny_export), str(app), "--no-check"]) == 2  # no --force: refused
    assert "already exists" in capsys.readouterr().err
    (app / "stale.txt").write_text("from the old package")
    assert main(["app", "build", str(tiny_export), str(app), "--no-check", "--force"]) == 0
    assert not (app / "stale.txt").exists() and (app / "services.xml").exists()
    # an export is not a package: --force will not replace one with the other
    assert main(["app", "build", str(tiny_export), str(tmp_path / "x"), "--no-check"]) == 0
    assert main(["export", str(tiny_export), str(tmp_path / "x"), "--force"]) == 2
    assert main(["app", "build", str(tiny_export), str(tiny_export), "--force", "--no-check"]) == 2
    assert (tiny_export / "model.onnx").exists()


@needs_java()
def test_a_package_that_fails_its_check_is_not_left_behind(tmp_path, capsys):
    export = fake_export(tmp_path / "export")  # a manifest and a "model.onnx" that is no ONNX model
    out = tmp_path / "app"
    assert main(["app", "build", str(export), str(out)]) == 2
    assert "Vespa's embedder failed" in capsys.readouterr().err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".app")]
    # so a re-run does not say only "already exists"
    assert main(["app", "build", str(export), str(out)]) == 2
    assert "already exists" not in capsys.readouterr().err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o002, 0o775), (0o077, 0o700)])
def test_output_directories_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        out = atomic_dir(tmp_path / "out", lambda tmp: (tmp / "f").write_text("x"), "test")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == mode
    marker = json.loads((out / MARKER).read_text())
    assert marker["kind"] == "test" and len(marker["id"]) == 32  # each artefact its own id


# ------------------------------------------------------------------ the embedded index


@pytest.fixture
def index_dir(tiny_export, tmp_path):
    from vespa_app.embedded import EmbeddedIndex

    docs = [Doc(f"d{i}", f"title {i}", " ".join(toy_pairs(20)[i].positive.split())) for i in range(20)]
    EmbeddedIndex.build(tmp_path / "index", tiny_export, docs, progress=False)
    return tmp_path / "index"


def write_beir(folder, docs):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in docs)
    )
    (folder / "queries.jsonl").write_text('{"_id": "q", "text": "river stone"}\n')
    (folder / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\nq\t{docs[0].id}\t1\n")
    return folder


def test_eval_refuses_an_index_built_on_another_corpus(index_dir, tmp_path, capsys):
    other = write_beir(tmp_path / "other", [Doc("x1", "t", "another corpus"), Doc("x2", "t", "entirely")])
    assert main(["eval", "--backend", "embedded", "--index", str(index_dir), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert "built from another corpus" in err and "Rebuild it" in err and "Traceback" not in err
    same = write_beir(
        tmp_path / "same",
        [
            Doc(d["id"], d["title"], d["text"])
            for d in map(json.loads, (index_dir / "docs.jsonl").read_text().splitlines())
        ],
    )
    assert main(["eval", "--backend", "embedded", "--index", str(index_dir), "--data", str(same)]) == 0


def test_an_index_refuses_an_export_rewritten_after_it_was_built(index_dir, tmp_path, capsys):
    meta = json.loads((index_dir / "meta.json").read_text())
    export = tmp_path / "export-copy"
    shutil.copytree(meta["export_dir"], export)
    meta["export_dir"] = str(export)
    (index_dir / "meta.json").write_text(json.dumps(meta))
    assert main(["search", str(index_dir), "river"]) == 0  # the same export, copied: fine
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["source_model"] = "a re-export"
    (export / "manifest.json").write_text(json.dumps(manifest))
    assert main(["search", str(index_dir), "river"]) == 2
    assert "was re-written after this index was built" in capsys.readouterr().err
    assert main(["search", str(index_dir), "river", "--profile", "bm25"]) == 0  # BM25 needs no embedder


def damage(index_dir, how):
    lines = (index_dir / "docs.jsonl").read_text().splitlines(keepends=True)
    meta = json.loads((index_dir / "meta.json").read_text())
    if how == "truncated docs":
        (index_dir / "docs.jsonl").write_text("".join(lines[:-3]) + lines[-3][:10])
    elif how == "docs cut at a line end":
        (index_dir / "docs.jsonl").write_text("".join(lines[:-3]))
    elif how == "extra docs":
        (index_dir / "docs.jsonl").write_text("".join(lines) + lines[0].replace('"d0"', '"d99"'))
    elif how == "reordered docs":
        (index_dir / "docs.jsonl").write_text("".join([lines[1], lines[0], *lines[2:]]))
    elif how == "meta without a key":
        del meta["hnsw"]
        (index_dir / "meta.json").write_text(json.dumps(meta))
    elif how == "meta not JSON":
        (index_dir / "meta.json").write_text("{")
    elif how == "embeddings of another size":
        np.save(index_dir / "embeddings.npy", np.zeros((5, meta["dimension"]), dtype=np.float32))
    elif how == "hnsw garbage":
        (index_dir / "hnsw.faiss").write_bytes(b"not an index")


@pytest.mark.parametrize(
    "how",
    [
        "truncated docs",
        "docs cut at a line end",
        "extra docs",
        "reordered docs",
        "meta without a key",
        "meta not JSON",
        "embeddings of another size",
        "hnsw garbage",
    ],
)
def test_a_damaged_index_is_refused_in_one_line(index_dir, how):
    damage(index_dir, how)
    result = subprocess.run(
        [sys.executable, "-m", "siamese", "search", str(index_dir), "river"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "Rebuild it" in result.stderr


# ------------------------------------------------------------------ readers


def test_a_truncated_gz_names_the_file_and_the_fix(tmp_path):
    good = gzip.compress(b"".join(b'{"_id": "%d", "text": "some text %d"}\n' % (i, i) for i in range(2000)))
    path = tmp_path / "corpus.jsonl.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(
        DataError, match=r"corpus.jsonl.gz, line \d+: truncated gzip.*Copy or download it again"
    ):
        read_corpus(path)


def test_a_gz_that_is_not_gzip_names_the_file(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    path.write_text('{"_id": "1", "text": "plain text"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl.gz, line 1: not gzip data.*drop the .gz suffix"):
        read_corpus(path)


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"_id": "1", "text": "a"}\n{"_id": "2", "text": "b"}\n')
    assert list(read_corpus(path)) == ["1", "2"]


def test_qrels_without_a_header_keep_their_first_judgement(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("query-1\tdoc-1\t1\nquery-2\tdoc-2\t2\n")  # the first id even starts with "query"
    assert read_qrels(path, {"doc-1", "doc-2"}, {"query-1", "query-2"}) == {
        "query-1": {"doc-1": 1},
        "query-2": {"doc-2": 2},
    }
    path.write_text("query-id\tcorpus-id\tscore\nquery-1\tdoc-1\t1\n")
    assert read_qrels(path, {"doc-1"}, {"query-1"}) == {"query-1": {"doc-1": 1}}


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("dimension", True, "dimension must be a positive integer"),
        ("max_tokens", True, "max_tokens must be"),
        ("normalize", "false", "normalize must be true or false"),
        ("normalize", 1, "normalize must be true or false"),
        ("prefixes", {"query": 1, "document": ""}, "each a string"),
        ("inputs", "input_ids", "inputs must be"),
    ],
)
def test_manifest_values_are_type_checked(tmp_path, field, value, problem):
    export = fake_export(tmp_path / "export")
    raw = json.loads((export / "manifest.json").read_text())
    raw[field] = value
    (export / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=problem):
        Manifest.load(export)
    assert main(["app", "build", str(export), str(tmp_path / "app"), "--no-check"]) == 2
    assert not (tmp_path / "app").exists()


def test_ctrl_c_ends_with_one_line_and_exit_130(tiny_model, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"query": p.query, "positive": p.positive}) + "\n" for p in toy_pairs(48))
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "siamese",
            "train",
            "--data",
            str(data),
            "--base",
            str(tiny_model),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "200",
            "--batch-size",
            "4",
            "--max-length",
            "32",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        # as a terminal's Ctrl-C finds it: a test run started in the background (`cmd &`)
        # ignores SIGINT, and a child inherits that, so Python would never see the signal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while not (tmp_path / "run" / "train_config.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err and "interrupted (Ctrl-C)" in err
    assert not (tmp_path / "run" / "model").exists()


# ------------------------------------------------------------------ what held up, kept


def test_the_query_text_never_reaches_yql():
    from vespa_app.client.query import query_body
    from vespa_app.profiles import NAMES

    hostile = "x') or true or ({targetHits:1}nearestNeighbor(embedding, q)"
    for profile in NAMES:
        body = query_body(hostile, profile)
        assert hostile not in body["yql"] and body["query"] == hostile


def test_prefixes_are_written_to_services_xml_escaped_and_verbatim(tmp_path):
    import xml.etree.ElementTree as ET

    from test_vespa_package import build, embedder

    prefix = 'query: <b>&"it\'s"</b> '
    app = build(tmp_path, prefixes={"query": prefix, "document": "passage: "})
    e = embedder(app)
    assert e.find("prepend/query").text == prefix and e.find("prepend/document").text == "passage: "
    ET.parse(app / "services.xml")  # well-formed


def test_an_interrupted_write_leaves_nothing_and_keeps_the_old_artefact(tmp_path):
    def interrupted(tmp):
        (tmp / "half.bin").write_bytes(b"x" * 1000)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_dir(tmp_path / "new", interrupted, "export")
    assert list(tmp_path.iterdir()) == []
    old = atomic_dir(tmp_path / "old", lambda tmp: (tmp / "model.onnx").write_text("old"), "export")
    with pytest.raises(KeyboardInterrupt):
        atomic_dir(old, interrupted, "export", replace=True)
    assert (old / "model.onnx").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_the_scratch_folder_of_a_writer_killed_mid_write_is_removed_by_the_next_writer(tmp_path):
    """Issue 35 #6: kill -9 inside an atomic write left `.OUT.tmp-*` (87 MB for an export) for ever."""
    out = tmp_path / "export"
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import os, sys; sys.path.insert(0, sys.argv[2]); from common.atomic import atomic_dir\n"
                "def write(tmp):\n"
                "    (tmp / 'model.onnx').write_bytes(b'x' * 100000)\n"
                "    os.kill(os.getpid(), 9)\n"
                "atomic_dir(sys.argv[1], write, 'export')"
            ),
            str(out),
            str(REPO),
        ]
    )
    assert killed.returncode == -9
    left = list(tmp_path.glob(".export.tmp-*"))
    assert len(left) == 1 and not out.exists()
    alive = (
        tmp_path / f".export.tmp-{__import__('socket').gethostname()}-{os.getpid()}-abc"
    )  # a live writer's: kept
    alive.mkdir()
    atomic_dir(out, lambda tmp: (tmp / "model.onnx").write_text("whole"), "export")
    assert (out / "model.onnx").read_text() == "whole"
    assert list(tmp_path.glob(".export.tmp-*")) == [alive]


# ------------------------------------------------------------ issue 35, #7-#13: one line, never a traceback


def _one_error_line(capsys, argv, says):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err, err
    assert says in err, err
    return err


@pytest.fixture
def tiny_files(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": f"d{i}", "title": "t", "text": f"text {i}"}) + "\n" for i in range(4))
    )
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"_id": "q1", "text": "a question"}) + "\n")
    zeros = tmp_path / "zeros.tsv"
    zeros.write_text("query-id\tcorpus-id\tscore\nq1\td0\t0\nq1\td1\t0\n")
    return corpus, queries, zeros


def test_qrels_with_no_relevant_document_are_one_line_naming_the_file(
    tiny_model, tiny_files, tmp_path, capsys
):
    corpus, queries, zeros = tiny_files
    with pytest.raises(DataError, match="zeros.tsv: no relevant document: all 2 judgements have score 0"):
        read_qrels(zeros, {"d0", "d1"}, {"q1"})
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(json.dumps({"query": p.query, "positive": p.positive}) + "\n" for p in toy_pairs(8))
    )
    _one_error_line(
        capsys,
        [
            "run",
            "--pairs",
            str(pairs),
            "--corpus",
            str(corpus),
            "--queries",
            str(queries),
            "--qrels",
            str(zeros),
            "--base",
            str(tiny_model),
            "--out",
            str(tmp_path / "run"),
        ],
        "no relevant document",
    )
    assert not (tmp_path / "run" / "train").exists()


@pytest.mark.parametrize(
    "argv, says",
    [
        (
            ["feed", "http://127.0.0.1:99999", "CORPUS"],
            "'http://127.0.0.1:99999' is not a URL Vespa can be reached at (Port out of range",
        ),
        (
            ["query", "http://[::1", "a question"],
            "'http://[::1' is not a URL Vespa can be reached at (Invalid IPv6 URL)",
        ),
        (["feed", "ftp://127.0.0.1:9", "CORPUS"], "scheme 'ftp': Vespa answers http or https"),
        (["query", "http://", "a question"], "(no host)"),
    ],
)
def test_a_url_vespa_cannot_be_at_is_refused_up_front(tiny_files, capsys, argv, says):
    argv = [str(tiny_files[0]) if a == "CORPUS" else a for a in argv]
    _one_error_line(capsys, argv, says)


def test_a_cloud_key_that_is_not_a_pem_private_key_is_one_line(tiny_export, tmp_path, capsys):
    from vespa_app.package.build import write_package

    app = write_package(tiny_export, tmp_path / "app", check=None)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    argv = ["deploy", str(app), "--target", "cloud", "--tenant", "t", "--application", "a", "--key"]
    _one_error_line(capsys, argv + [str(junk)], "not a PEM private key")
    _one_error_line(capsys, argv + [str(tmp_path / "absent.pem")], "cannot read it")


def test_control_characters_in_a_hit_are_escaped_before_printing(capsys):
    from vespa_app.client.query import hits_from_response, print_hits

    hostile = "\x1b]0;pwned\x07title\x1b[2J"
    print_hits(
        hits_from_response(
            {
                "root": {
                    "children": [
                        {
                            "id": "x",
                            "relevance": 1.0,
                            "fields": {
                                "id": "doc\r1",
                                "title": hostile,
                                "chunks": ["a\x08b"],
                                "matchfeatures": {"closest(embedding)": {"0": 1.0}},
                            },
                        }
                    ]
                }
            }
        )
    )
    printed = capsys.readouterr().out
    assert not any(c in printed for c in "\x1b\x07\r\x08")
    assert "\\x1b]0;pwned\\x07title\\x1b[2J" in printed and "doc\\r1" in printed and "a\\x08b" in printed


@pytest.mark.parametrize(
    "hit, says",
    [
        ({"relevance": 1.0, "fields": {}}, "hit 1 has no id"),
        ({"id": "x", "fields": {}}, "hit 1 has no relevance"),
    ],
)
def test_a_hit_without_id_or_relevance_is_a_malformed_answer(hit, says):
    from vespa_app.client.http import VespaError
    from vespa_app.client.query import hits_from_response

    with pytest.raises(VespaError, match=f"Vespa's answer is malformed: {says}"):
        hits_from_response({"root": {"children": [hit]}})


def test_maxsim_on_an_index_without_token_vectors_names_the_command_to_run(index_dir, capsys):
    _one_error_line(capsys, ["search", str(index_dir), "x", "--profile", "colbert"], "siamese run --colbert")


def test_vespas_verifier_dies_with_the_process_that_started_it(tmp_path):
    """kill -9 of `siamese app check` (or a run in its package stage) left the Java verifier running as an
    orphan; its child processes now get SIGKILL when their parent dies."""
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import subprocess, sys; sys.path.insert(0, sys.argv[2])\n"
                "from vespa_app.check.java import _die_with_parent\n"
                "child = subprocess.Popen(['sleep', '60'], preexec_fn=_die_with_parent)\n"
                "open(sys.argv[1], 'w').write(str(child.pid)); child.wait()"
            ),
            str(pid_file),
            str(REPO),
        ]
    )
    deadline = time.time() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.time() < deadline
        time.sleep(0.05)
    child = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 5
    while (
        time.time() < deadline
        and os.path.exists(f"/proc/{child}")
        and open(f"/proc/{child}/stat").read().split()[2] != "Z"
    ):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z"
