"""A model folder that is not whole is refused with one line naming the file, by the API, the
prediction command and the evaluation job alike: JSON that does not parse, weights cut short (even
when the ONNX engine would never read them), weights missing from the file. A saved folder's files
all get the same mode."""

import json
import os
import shutil
import stat
import struct

import pytest

from conftest import run_main
from train.inference import Classifier, ModelFolderError


@pytest.fixture
def copy(news_model_dir, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(news_model_dir, target)
    return target


def write_thresholds(folder, value):
    (folder / "thresholds.json").write_text(value if isinstance(value, str) else json.dumps(value))


BROKEN_JSON = ["thresholds.json", "config.json", "tokenizer.json", "tokenizer_config.json"]


@pytest.mark.parametrize("name", BROKEN_JSON)
def test_a_json_file_that_does_not_parse_is_named_by_the_api(name, copy):
    if name == "thresholds.json":
        write_thresholds(copy, {"topics": {"summitry": 0.4}})
    (copy / name).write_text((copy / name).read_text()[:-20])  # cut short, as a failed copy leaves it
    with pytest.raises(ModelFolderError, match=f"^{copy / name}: not valid JSON \\("):
        Classifier.from_pretrained(copy)
    with pytest.raises(ModelFolderError, match=f"^{copy / name}: not valid JSON \\("):
        Classifier.from_pretrained(copy, engine="torch")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_corrupt_thresholds_file_is_one_line_in_the_commands(command, copy, tmp_path, capsys):
    write_thresholds(copy, '{"topics": {"summitry": 0.4,')
    if command == "predict":
        from train.predict import main

        src = tmp_path / "in.jsonl"
        src.write_text(json.dumps({"text": "seoul"}) + "\n")
        argv = [f"model_dir={copy}", f"input={src}", "progress=false"]
    else:
        from train.evaluate import main

        argv = [f"models=[{copy}]", f"out_dir={tmp_path / 'report'}", "baselines=false", "progress=false"]
    code, _, err = run_main(main, argv, capsys)
    assert code == 2 and err.startswith(f"error: {copy / 'thresholds.json'}: not valid JSON ("), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("value,problem", [
    ([0.5], "expected {task: {label: threshold}}"),
    ({"stance": {"neutral": 0.5}}, "stance: not a multi-label task"),
    ({"topics": {"summitry": "high"}}, "topics.summitry: 'high' is not a threshold between 0 and 1"),
    ({"topics": {"summitry": 1.5}}, "topics.summitry: 1.5 is not a threshold"),
    ({"topics": {"nukes": 0.5}}, "topics.nukes: 0.5 is not a threshold between 0 and 1 for one of"),
])
def test_thresholds_the_decisions_would_misread_are_refused(value, problem, copy):
    write_thresholds(copy, value)
    with pytest.raises(ModelFolderError, match=f"^{copy / 'thresholds.json'}: " + problem.replace("{", "\\{")
                       .replace("}", "\\}").replace(".", "\\.").replace("(", "\\(")):
        Classifier.from_pretrained(copy)


def test_truncated_weights_are_caught_even_when_onnx_would_run(copy):
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    assert Classifier.from_pretrained(copy).engine == "onnx"  # the path that never reads the weights
    for broken, problem in [(data[:-100], "truncated or corrupt"), (data + b"\0" * 10, "truncated or corrupt"),
                            (data[:4], "truncated or not a safetensors file"),
                            (struct.pack("<Q", 40) + b"{" * 40 + data[48:], "corrupt header")]:
        weights.write_bytes(broken)
        with pytest.raises(ModelFolderError, match=f"^{weights}: .*{problem}"):
            Classifier.from_pretrained(copy)


def test_weights_missing_from_the_file_are_an_error_not_a_random_head(copy):
    from safetensors.torch import load_file, save_file

    tensors = load_file(copy / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if not k.startswith("classifier.")}, copy / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(ModelFolderError, match="model.safetensors: 2 weight\\(s\\) missing .*classifier"):
        Classifier.from_pretrained(copy, engine="torch")


def test_every_file_of_a_saved_model_folder_has_the_same_mode(news_model_dir):
    modes = {str(f.relative_to(news_model_dir)): stat.S_IMODE(f.stat().st_mode)
             for f in news_model_dir.rglob("*") if f.is_file()}
    umask = os.umask(0)
    os.umask(umask)
    assert "model.safetensors" in modes and "onnx/model.onnx" in modes
    assert set(modes.values()) == {0o666 & ~umask}, modes
