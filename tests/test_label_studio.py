"""The analyst's loop against a real Label Studio: select paragraphs with a tiny model, label them in
Label Studio (started here from .venv-labelstudio, SQLite store in a temporary folder, localhost
only), export, import into the corpus format, validate, and train on the result.

`make test` creates .venv-labelstudio (`make labelstudio`, label-studio==1.23.2); without it this
module is skipped, saying so."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import PROJECT, STANCE_CUES, TOPIC_CUES, make_records, tiny_overrides, write_jsonl

LABEL_STUDIO_VENV = PROJECT / ".venv-labelstudio"
INSTALLED = LABEL_STUDIO_VENV / ".installed-1.23.2"  # written by `make labelstudio` after a complete install
TOKEN = "peninsula-test-token-0123456789"
STARTUP_LIMIT_S = 900  # its first start migrates an empty SQLite database: 40 s here, far longer on a starved CPU

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not INSTALLED.exists(),
                       reason=f"{INSTALLED} missing: run `make labelstudio` (make test does) to test against Label Studio"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A Label Studio server starting on 127.0.0.1 with one admin user whose API token is TOKEN;
    `ready()` waits for it (its first start migrates a database: the test works meanwhile)."""
    home = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = dict(os.environ, LABEL_STUDIO_BASE_DATA_DIR=str(home / "data"), LATEST_VERSION_CHECK="false",
               COLLECT_ANALYTICS="false", HOME=str(home))
    with (home / "server.log").open("w") as log:
        server = subprocess.Popen(
            [str(LABEL_STUDIO_VENV / "bin/label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1",
             "--port", str(port), "--username", "analyst@example.com", "--password", "peninsula-pass",
             "--user-token", TOKEN, "--enable-legacy-api-token"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Server(server, f"http://127.0.0.1:{port}", home / "server.log")
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own process group (start_new_session), no one else's
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


class Server:
    def __init__(self, process, url, log):
        self.process, self.url, self.log, self.started = process, url, log, time.monotonic()

    def ready(self) -> "Api":
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"label-studio exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                    if response.status == 200:
                        print(f"label-studio up {time.monotonic() - self.started:.0f} s after its start")
                        return Api(self.url)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() - self.started > STARTUP_LIMIT_S:
                pytest.fail(f"label-studio not up after {STARTUP_LIMIT_S} s:\n{self.log.read_text()[-3000:]}")
            time.sleep(1)


class Api:
    def __init__(self, url):
        self.url = url

    def __call__(self, method, path, body=None, raw=False):
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            data = response.read()
        return data.decode() if raw else json.loads(data or b"null")


def run(module, *args):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600)


def gold(text: str) -> dict:
    """The tiny corpus's labels follow its cue words; annotating by them is annotating correctly."""
    words = text.split()
    return {"topics": [t for t, cue in TOPIC_CUES.items() if cue in words],
            "stance": next(s for s, cue in STANCE_CUES.items() if cue in words)}


def test_select_label_export_import_validate_and_train(label_studio, tmp_path, tiny_model_dir, tiny_corpus,
                                                       compose_cfg):
    from train.fit import train

    overrides = tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{"trainer.num_train_epochs": 1})
    train(compose_cfg(overrides))
    model = tmp_path / "models/tiny-run"
    pool = make_records(40, 5, "pool")
    for i, record in enumerate(pool):  # unlabelled paragraphs, unlike any corpus text
        record["text"] += f" according to dispatch number {i * 37 + 11} from the regional desk"
        del record["topics"], record["stance"], record["lang"]
    pool_file = write_jsonl(tmp_path / "pool.jsonl", pool)
    tasks_file = tmp_path / "to_label.json"
    corpus = [f"data.files.{s}={p}" for s, p in tiny_corpus.items()] + [f"data.files.seeds={tiny_corpus['test']}"]

    result = run("train.annotate", "select", f"input={pool_file}", "n=12", f"output={tasks_file}",
                 f"model_dir={model}", "lang=en", "min_chars=10", "progress=false", *corpus)
    assert result.returncode == 0, result.stderr[-3000:]
    tasks = json.loads(tasks_file.read_text())
    assert len(tasks) == 12 and len({t["data"]["text"] for t in tasks}) == 12

    api = label_studio.ready()
    project = api("POST", "/api/projects", {
        "title": "peninsula", "label_config": (tmp_path / "to_label.label_config.xml").read_text()})
    imported = api("POST", f"/api/projects/{project['id']}/import", tasks)
    assert imported["task_count"] == 12 and imported["prediction_count"] == 12
    stored = api("GET", f"/api/tasks?project={project['id']}&page_size=100")["tasks"]
    assert {t["data"]["paragraph_id"] for t in stored} == {t["data"]["paragraph_id"] for t in tasks}

    labelled = {}
    skipped, untouched = stored[0]["id"], stored[1]["id"]
    for t in stored[2:]:
        labels = gold(t["data"]["text"])
        result = [{"from_name": "topics", "to_name": "text", "type": "choices", "value": {"choices": labels["topics"]}}] \
            if labels["topics"] else []
        result.append({"from_name": "stance", "to_name": "text", "type": "choices", "value": {"choices": [labels["stance"]]}})
        api("POST", f"/api/tasks/{t['id']}/annotations", {"result": result, "lead_time": 4.2})
        labelled[t["data"]["paragraph_id"]] = (t["id"], labels)
    api("POST", f"/api/tasks/{skipped}/annotations", {"result": [], "was_cancelled": True})
    export = tmp_path / "export.json"
    export.write_text(json.dumps(api("GET", f"/api/projects/{project['id']}/export?exportType=JSON&download_all_tasks=true")))
    export_csv = tmp_path / "export.csv"
    export_csv.write_text(api("GET", f"/api/projects/{project['id']}/export?exportType=CSV", raw=True))

    mine = tmp_path / "mine.jsonl"
    result = run("train.annotate", "import", f"input={export}", f"output={mine}")
    assert result.returncode == 2 and not mine.exists()
    assert f"(task id {skipped}): annotations: the task was skipped" in result.stderr
    assert f"(task id {untouched}): annotations: the task has no label" in result.stderr

    result = run("train.annotate", "import", f"input={export}", f"output={mine}", "on_unlabelled=skip")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "10 labelled paragraphs" in result.stderr and "(2 unlabelled tasks skipped)" in result.stderr
    records = [json.loads(line) for line in mine.read_text().splitlines()]
    assert len(records) == 10
    for r in records:
        task_id, labels = labelled[r["id"]]
        assert {"topics": r["topics"], "stance": r["stance"]} == labels
        assert r["lang"] == "en" and r["source"] == "test"
        assert r["provenance"]["task_id"] == task_id and r["provenance"]["annotator"] == 1
        assert r["provenance"]["tool"] == "label-studio" and r["provenance"]["lead_time_s"] == 4.2

    from_csv = tmp_path / "mine_from_csv.jsonl"
    result = run("train.annotate", "import", f"input={export_csv}", f"output={from_csv}")
    assert result.returncode == 0, result.stderr[-3000:]
    by_id = {r["id"]: r for r in map(json.loads, from_csv.read_text().splitlines())}
    assert {(r["id"], r["text"], tuple(r["topics"]), r["stance"], r["lang"]) for r in records} == \
        {(r["id"], r["text"], tuple(r["topics"]), r["stance"], r["lang"]) for r in by_id.values()}

    result = run("train.data", "validate", mine)
    assert result.returncode == 0 and "0 problem(s) in 1 file(s)" in result.stdout, result.stderr

    overrides = tiny_overrides(tmp_path / "again", tiny_model_dir, tiny_corpus, run_name="with-mine")
    result = run("train", "debug=tiny", *overrides, f"data.extra_files=[{mine}]",
                 f"hydra.run.dir={tmp_path / 'again/hydra'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data.extra_files: 10 labelled paragraphs added to the training split" in result.stdout + result.stderr
    assert (tmp_path / "again/models/with-mine/model.safetensors").is_file()
