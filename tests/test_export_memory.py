"""What keeps the ONNX export's memory low (`make train` peaked at 8 GB with the export inside the
training process): the training job exports only after the Trainer and its model are freed; the
export frees the PyTorch model before the ONNX steps and runs the fusions with the weights on
disk; and int8 keeps the layers it would change most in fp32."""

import gc
import json
import warnings

import onnx
import pytest

from conftest import tiny_overrides


def count_alive(*classes) -> dict:
    """{class name: instances still reachable} after a garbage collection."""
    gc.collect()
    with warnings.catch_warnings():  # isinstance on deprecated module proxies warns
        warnings.simplefilter("ignore")
        objects = gc.get_objects()
        return {cls.__name__: sum(isinstance(o, cls) for o in objects) for cls in classes}


def test_the_training_job_exports_after_the_trainer_is_freed(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg,
                                                             monkeypatch):
    import transformers

    import train.export as exporter
    from train.fit import train

    alive = {}
    real_export = exporter.export

    def export(model_dir, *args, **kwargs):
        alive.update(count_alive(transformers.Trainer, transformers.PreTrainedModel))
        return real_export(model_dir, *args, **kwargs)
    monkeypatch.setattr(exporter, "export", export)
    train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus,
                                     **{"trainer.num_train_epochs": 1, "export_onnx": True})))
    assert alive == {"Trainer": 0, "PreTrainedModel": 0}  # nothing of training holds memory during the export
    assert (tmp_path / "models/tiny-run/onnx/model.onnx").is_file()


def test_the_export_frees_the_pytorch_model_before_the_onnx_steps(news_model_dir, tmp_path, monkeypatch):
    import shutil

    import transformers

    import train.export as exporter

    model_dir = tmp_path / "model"
    shutil.copytree(news_model_dir, model_dir)
    seen, real_fuse = {}, exporter.fuse

    def fuse(raw, out, config):
        seen["models"] = count_alive(transformers.PreTrainedModel)["PreTrainedModel"]
        seen["weights_on_disk"] = (raw.parent / "raw.onnx").stat().st_size
        return real_fuse(raw, out, config)
    monkeypatch.setattr(exporter, "fuse", fuse)
    report = exporter.export(model_dir)
    assert seen["models"] == 0
    assert report["fusions"]["Attention"] == 2
    # one self-contained file per precision, nothing of the intermediate steps left
    assert sorted(p.name for p in (model_dir / "onnx").iterdir()) == ["export.json", "model.onnx",
                                                                        "model_quantized.onnx"]
    assert onnx.load(model_dir / "onnx/model.onnx").graph.initializer[0].data_location == 0  # not external


def test_int8_keeps_the_embeddings_and_the_feed_forward_outputs_in_fp32(news_model_dir):
    graph = onnx.load(news_model_dir / "onnx/model_quantized.onnx").graph
    ops = {node.name: node.op_type for node in graph.node}
    ffn_outputs = [name for name in ops if name.endswith("/output/dense/MatMul") and "/attention/" not in name]
    assert len(ffn_outputs) == 2 and all(ops[name] == "MatMul" for name in ffn_outputs)  # one per layer, fp32
    assert "EmbedLayerNormalization" in ops.values()  # not QEmbedLayerNormalization
    quantized = [op for op in ops.values() if op in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention")]
    assert len(quantized) >= 2 + 2 * 2  # attention (QKV) and the attention-output and FFN-input projections
    report = json.loads((news_model_dir / "onnx/export.json").read_text())
    assert sorted(report["model_quantized.onnx"]["kept_in_fp32"]) == sorted(ffn_outputs)


@pytest.mark.parametrize("name,kept", [("/bert/encoder/layer.3/output/dense/MatMul", True),
                                       ("/roberta/encoder/layer.11/output/dense/MatMul", True),
                                       ("/bert/encoder/layer.3/attention/output/dense/MatMul", False),
                                       ("/bert/encoder/layer.3/intermediate/dense/MatMul", False)])
def test_the_feed_forward_output_projection_is_recognised_by_its_transformers_name(name, kept):
    from train.export import FFN_OUTPUT

    assert bool(FFN_OUTPUT.search(name)) is kept
