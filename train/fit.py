"""The training job: fine-tune one encoder with one head for every task of the label schema.

`train(cfg)` reads in phases: seed, data (validated before any model is loaded), training
arguments and, with `resume=true`, the checkpoint to continue (its label schema checked), model,
tokenised datasets, loss with class weights from the training split, Trainer with per-epoch validation,
early stopping and best-checkpoint selection, then an atomic save into `models/<run_name>` and
`models/latest`. The command line is `python -m train` (see train/__main__.py).
"""

import json
import logging
import os
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from train import model_card
from train.base_model import resolve_model_path
from train.data import DataError, limit, load_extra_files, load_split, project_path, split_paths
from train.files import remove_stale_temps, temp_path
from train.labels import MULTI, LabelSchema, check_schema_matches
from train.metrics import scores_at_half
from train.model_folder import quiet_transformers
from train.tracking import configure as configure_tracking

log = logging.getLogger(__name__)


def train(cfg) -> dict:
    """Run one training job described by a composed Hydra config; return validation metrics."""
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              EarlyStoppingCallback, Trainer, TrainingArguments, set_seed)

    set_seed(cfg.seed)
    schema = LabelSchema(cfg.data.schema)
    paths = split_paths(cfg.data)
    problems, splits = [], {}
    for split in ("train", "validation"):
        try:
            splits[split] = load_split(paths[split], schema)
        except DataError as e:
            problems += e.problems
    try:  # the user's own labelled files (data.extra_files), refused if they overlap an evaluation file
        splits["train"] = splits.get("train", []) + load_extra_files(cfg.data, schema)
    except DataError as e:
        problems += e.problems
    if problems:
        raise DataError(problems)
    train_records = limit(splits["train"], cfg.data.get("max_train_samples"), cfg.seed)
    val_records = limit(splits["validation"], cfg.data.get("max_eval_samples"), cfg.seed)
    log.info("data: %d training and %d validation paragraphs", len(train_records), len(val_records))

    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_args.get("bf16") == "auto":
        trainer_args["bf16"] = fast_bf16()
    if not torch.cuda.is_available():
        trainer_args["use_cpu"] = True  # transformers requires it for bf16 autocast on the CPU
    # Our loss is a per-batch mean; with this on, the Trainer multiplies it by the number of
    # processes (it expects a sum over the global token count), doubling gradients under torchrun.
    trainer_args["average_tokens_across_devices"] = False
    configure_tracking(trainer_args, project_path(cfg.paths.work_dir), cfg.run_name)  # logs into the run folder
    args = TrainingArguments(
        output_dir=str(project_path(cfg.paths.work_dir) / "checkpoints"), eval_strategy="epoch",
        save_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="macro_f1",
        greater_is_better=True, seed=cfg.seed, data_seed=cfg.seed, **trainer_args)
    if args.world_size > 1:  # every torchrun process composed its own config: `${now}` in work_dir may differ
        from accelerate.utils import broadcast_object_list

        args.output_dir = broadcast_object_list([args.output_dir], from_process=0)[0]
    checkpoints = Path(args.output_dir)
    resume = last_checkpoint(checkpoints) if cfg.get("resume", False) else None
    if resume:
        check_resume_schema(resume, schema, cfg.data.name)  # before any model is loaded or file written
        log.info("resuming from %s", resume)
    elif cfg.get("resume", False):
        log.warning("resume=true but %s holds no complete checkpoint: training from the start", checkpoints)

    base = resolve_model_path(cfg.model.name_or_path)
    remote = bool(cfg.model.get("trust_remote_code", False))
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=remote)
    names = schema.output_names()
    with quiet_transformers():  # its LOAD REPORT lists the new head as MISSING, in ANSI colours: we say it plainly
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=schema.num_outputs, id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)}, problem_type="multi_label_classification",
            trust_remote_code=remote, output_loading_info=True)
    new = sorted({k.rsplit(".", 1)[0] for k in loading["missing_keys"]})
    log.info("model: newly initialised (not in %s): %s", cfg.model.name_or_path, ", ".join(new) or "nothing")
    # What our loaders need beyond id2label: the task slices, the input prefix and window.
    model.config.task_schema = schema.to_list()
    model.config.text_prefix = cfg.model.text_prefix
    model.config.max_seq_length = cfg.model.max_length  # not `max_length`: transformers reserves it for generation
    model.config.text_context = cfg.model.get("context", "none")  # headline: (headline, paragraph) text pairs
    if should_freeze(cfg.model.freeze_word_embeddings):
        model.get_input_embeddings().weight.requires_grad_(False)
    freeze_lower_layers(model, cfg.model.get("freeze_layers", 0))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model: %s, %.1fM trainable of %.1fM parameters", cfg.model.name_or_path, trainable / 1e6,
             model.num_parameters() / 1e6)

    train_set = encode(train_records, schema, tokenizer, cfg.model, "train")
    val_set = encode(val_records, schema, tokenizer, cfg.model, "validation")

    trainer = Trainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
        compute_loss_func=MultiTaskLoss(schema, train_records, **cfg.loss),
        compute_metrics=partial(task_metrics, schema),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience)])
    trainer.loss_is_scaled_for_ga = False  # our loss is a batch mean: let the Trainer divide by GA steps

    speed = trainer.train(resume_from_checkpoint=resume).metrics
    if cfg.get("average_checkpoints", 0) > 1:
        average_best_checkpoints(trainer, checkpoints, cfg.average_checkpoints)
    metrics = {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items()}
    metrics.update({k: v for k, v in speed.items() if k in ("train_runtime", "train_samples_per_second")})
    metrics["epochs_run"] = trainer.state.epoch
    extras = {}
    if cfg.get("calibrate", True):  # scores that mean what they say, then thresholds tuned on them
        extras = calibrate(trainer, val_set, schema, metrics)
    if trainer.is_world_process_zero():
        out = project_path(cfg.paths.models_dir) / cfg.run_name
        tmp = write_model_folder(trainer, cfg, schema, metrics, out, extras)
        # The export reads the saved weights: drop the training state first, so that the export's
        # peak memory does not come on top of the Trainer's (it made `make train` peak at 8 GB).
        del trainer, model
        finish_model_folder(tmp, out, cfg, schema, metrics)
        print(summary(out, metrics, schema))
    return metrics


def calibrate(trainer, val_set, schema: LabelSchema, metrics: dict) -> dict:
    """Fit the calibration on the validation logits of the kept model and fold it into the head
    (train/calibration.py), tune per-label thresholds on the calibrated scores, and add the
    validation numbers after both (and ECE before/after) to `metrics`. Returns the files to save."""
    from train import calibration
    from train import metrics as M
    from train import thresholds as T

    # the Trainer may reorder evaluation batches (length grouping): take gold in its order
    prediction = trainer.predict(val_set)
    logits, gold = prediction.predictions, np.asarray(prediction.label_ids).astype(int)
    fitted = calibration.fit(schema, logits, gold)
    calibration.bake(trainer.model, schema, fitted)
    probs = schema.probabilities(calibration.apply(schema, fitted, logits))
    tuned = T.tune(schema, gold, probs, T.threshold_grid())
    after = M.task_scores(schema, gold, probs, tuned)
    before_ece = M.calibration(schema, gold, schema.probabilities(logits))
    after_ece = M.calibration(schema, gold, probs)
    for t in schema.tasks:
        metrics[f"calibrated_{t.name}_macro_f1"] = after[t.name]["macro_f1"]
        metrics[f"{t.name}_ece_before_calibration"] = before_ece[t.name]["ece"]
        metrics[f"{t.name}_ece_after_calibration"] = after_ece[t.name]["ece"]
    return {calibration.CALIBRATION_FILE: fitted, T.THRESHOLDS_FILE: tuned}


def average_best_checkpoints(trainer, checkpoint_dir: Path, k: int):
    """Replace the model's trainable weights by the mean over the k epoch checkpoints with the best
    validation macro-F1 (a cheap ensemble: one model, the average of nearby solutions)."""
    from safetensors.torch import load_file

    scores = {int(e["step"]): e["eval_macro_f1"] for e in trainer.state.log_history if "eval_macro_f1" in e}
    folders = [checkpoint_dir / f"checkpoint-{step}" for step in sorted(scores, key=scores.get, reverse=True)]
    folders = [f for f in folders if (f / "model.safetensors").is_file()][:k]
    if len(folders) < 2:
        log.warning("average_checkpoints=%d: only %d checkpoint(s) kept; nothing averaged", k, len(folders))
        return
    states = [load_file(str(f / "model.safetensors")) for f in folders]
    model = trainer.model
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and name in states[0]:
                param.copy_(torch.stack([s[name].float() for s in states]).mean(0).to(param.dtype))
    log.info("averaged the weights of %s", ", ".join(f.name for f in folders))


def summary(out: Path, metrics: dict, schema: LabelSchema) -> str:
    """The short report printed at the end of a run (validation split, best epoch, threshold 0.5)."""
    lines = [f"\nmodel saved to {out}", f"validation (best epoch, threshold 0.5):"]
    for t in schema.tasks:
        extra = "micro_f1" if t.kind == MULTI else "accuracy"
        lines.append(f"  {t.name:<10} macro-F1 {metrics[f'{t.name}_macro_f1']:.3f}   "
                     f"{extra} {metrics[f'{t.name}_{extra}']:.3f}")
    lines.append(f"  {'mean':<10} macro-F1 {metrics['macro_f1']:.3f}")
    if "calibrated_" + schema.tasks[0].name + "_macro_f1" in metrics:
        lines.append("validation after calibration and tuned thresholds (what inference uses):")
        for t in schema.tasks:
            lines.append(f"  {t.name:<10} macro-F1 {metrics[f'calibrated_{t.name}_macro_f1']:.3f}   ECE "
                         f"{metrics[f'{t.name}_ece_before_calibration']:.3f} -> "
                         f"{metrics[f'{t.name}_ece_after_calibration']:.3f}")
    lines.append(f"trained {metrics['epochs_run']:.0f} epochs in {metrics['train_runtime'] / 60:.1f} min "
                 f"({metrics['train_samples_per_second']:.1f} samples/s)")
    return "\n".join(lines)


def fast_bf16() -> bool:
    """bf16 autocast where the hardware runs it natively: a GPU that supports it, or a CPU with
    AVX-512 BF16 / AMX (about 1.8x the fp32 training speed on 2 cores; weights stay fp32)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def freeze_lower_layers(model, n: int):
    """Freeze the embeddings and the first `n` encoder layers: backpropagation then stops at layer n,
    which saves most of the backward pass through them (the upper layers and the head still learn)."""
    if not n:
        return
    layers = model.base_model.encoder.layer
    if not 0 < n <= len(layers):
        raise ValueError(f"model.freeze_layers={n}: the encoder has {len(layers)} layers")
    for module in [model.base_model.embeddings, *layers[:n]]:
        module.requires_grad_(False)


def should_freeze(setting) -> bool:
    """`auto`: freeze the word embeddings on CPU, where they are 96M of e5-small's 118M parameters."""
    return (not torch.cuda.is_available()) if setting == "auto" else bool(setting)


def encode(records, schema, tokenizer, model_cfg, split):
    """Tokenised `datasets.Dataset` with a float target vector per record (dynamic padding later).
    With `model.context=headline`, a record's `headline` (where it has one) is the first segment of
    a text pair and the paragraph the second, as `Classifier` reads articles."""
    from datasets import Dataset

    prefix, limit = model_cfg.text_prefix, model_cfg.max_length
    use_headline = model_cfg.get("context", "none") == "headline"
    columns, cut = {"input_ids": [], "attention_mask": []}, 0
    for r in records:
        pair = (prefix + r["headline"], r["text"]) if use_headline and r.get("headline") else (prefix + r["text"],)
        ids = tokenizer(*pair, truncation=True, max_length=limit)
        cut += len(tokenizer(*pair, verbose=False)["input_ids"]) > limit  # counted here, so no "indexing errors" warning
        columns["input_ids"].append(ids["input_ids"])
        columns["attention_mask"].append(ids["attention_mask"])
    if cut:  # never silent: training sees the first max_length tokens of long paragraphs
        log.warning("%s: %d of %d paragraphs are longer than max_length=%d tokens and were truncated "
                    "for training (inference windows long text instead)", split, cut, len(records), limit)
    columns["labels"] = [schema.encode(r) for r in records]
    return Dataset.from_dict(columns)


class MultiTaskLoss:
    """Sum over tasks: BCE on multi-label slices, cross-entropy on single-label ones.

    `balance_classes`: BCE `pos_weight` and "balanced" CE class weights from the training split's
    label counts. `logit_adjustment` (tau): add tau * log prior odds (log priors) to the logits in
    training only, so the raw head learns balanced decisions without re-weighting examples (Menon et
    al. 2021). `label_smoothing`: targets moved eps towards uniform. Calibration on validation then
    maps either back to real probabilities."""

    def __init__(self, schema: LabelSchema, train_records, balance_classes: bool = False,
                 logit_adjustment: float = 0.0, label_smoothing: float = 0.0):
        self.schema, self.smoothing = schema, label_smoothing
        self.weights, self.offsets = {}, {}
        targets = np.array([schema.encode(r) for r in train_records])
        for t in schema.tasks:
            positives = targets[:, t.slice].sum(axis=0)
            counts = np.maximum(positives, 1)  # a label absent from the split still gets a finite weight
            prior = counts / len(targets)
            if t.kind == MULTI:  # negatives / positives, as BCEWithLogitsLoss documents
                weight = (len(targets) - positives) / counts
                offset = np.log(prior) - np.log1p(-np.minimum(prior, 1 - 1e-6))
            else:  # "balanced": n / (k * count), as scikit-learn's compute_class_weight
                weight = len(targets) / (len(t.labels) * counts)
                offset = np.log(prior)
            self.weights[t.name] = torch.tensor(weight, dtype=torch.float32) if balance_classes else None
            self.offsets[t.name] = torch.tensor(logit_adjustment * offset, dtype=torch.float32)

    def __call__(self, outputs, labels, num_items_in_batch=None):
        logits = outputs.logits.float()
        loss = logits.new_zeros(())
        for t in self.schema.tasks:
            z = logits[:, t.slice] + self.offsets[t.name].to(logits.device)
            y = labels[:, t.slice].float()
            w = self.weights[t.name]
            w = None if w is None else w.to(z.device)
            if t.kind == MULTI:
                y = y * (1 - self.smoothing) + self.smoothing / 2
                loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(z, y, pos_weight=w)
            else:
                loss = loss + torch.nn.functional.cross_entropy(z, y.argmax(dim=1), weight=w,
                                                                label_smoothing=self.smoothing)
        return loss


def task_metrics(schema: LabelSchema, prediction) -> dict:
    """Trainer hook: `scores_at_half` of an EvalPrediction (logits and target vectors)."""
    return scores_at_half(schema, prediction.label_ids, schema.probabilities(prediction.predictions))


def last_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest complete `checkpoint-<step>` folder, or None. The Trainer writes a checkpoint in
    place and `trainer_state.json` last, so a run killed while saving leaves a folder without it."""
    done = [p for p in Path(checkpoint_dir).glob("checkpoint-*")
            if p.name.removeprefix("checkpoint-").isdigit() and (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.removeprefix("checkpoint-")))) if done else None


def check_resume_schema(checkpoint: str, schema: LabelSchema, data_name: str):
    """DataError unless the checkpoint was trained for `schema`: resuming a head for other labels
    (or the same labels in another order) would read every output as the wrong label."""
    try:
        check_schema_matches(checkpoint, schema, data_name)
    except (OSError, ValueError, KeyError, TypeError) as e:  # another schema, or no readable one
        raise DataError([f"{Path(checkpoint) / 'config.json'}: task_schema: {e}; or, to start afresh, "
                         f"drop resume=true or choose another paths.work_dir"]) from None


def write_model_folder(trainer, cfg, schema: LabelSchema, metrics: dict, out: Path,
                       extras: dict | None = None) -> Path:
    """Write the model folder under a temporary name and check it loads; return that name. Nothing
    is left behind if this fails."""
    from transformers import AutoConfig

    remove_stale_temps(out)  # a killed run's half-written folder of the same name
    tmp = temp_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        trainer.save_model(str(tmp))  # weights (safetensors), config.json with id2label, tokenizer
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; config.yaml records the same
        (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        (tmp / "label_schema.json").write_text(json.dumps(schema.to_list(), indent=2) + "\n")
        (tmp / "validation_metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        for name, content in (extras or {}).items():  # calibration.json, thresholds.json
            (tmp / name).write_text(json.dumps(content, indent=2) + "\n")
        saved = LabelSchema.from_model_config(AutoConfig.from_pretrained(tmp))
        if saved != schema or not (tmp / "model.safetensors").is_file():
            raise RuntimeError(f"{tmp}: saved model folder failed its check")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def finish_model_folder(tmp: Path, out: Path, cfg, schema: LabelSchema, metrics: dict):
    """Add the ONNX export (`export_onnx`), give every file the same mode, move the folder into
    place and point `models/latest` at it; a failure leaves neither a half-written folder nor a
    moved link."""
    try:
        if cfg.get("export_onnx"):
            from train.export import export, release_memory

            release_memory()
            try:  # onnx/: the fast CPU inference path, checked against these weights
                export(tmp)
            except Exception as e:  # an architecture the exporter cannot take must not cost the model
                log.warning("ONNX export failed (%s: %s); the model is saved without onnx/ and runs on "
                            "PyTorch (retry with `python -m train.export`)", type(e).__name__, e)
        model_card.write(tmp, cfg, schema, metrics)  # README.md, the Hugging Face model card
        same_mode_for_every_file(tmp)
        if out.exists():
            raise FileExistsError(f"{out} already exists; choose another run_name")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    point_latest(out)


def same_mode_for_every_file(folder: Path):
    """Give every file the mode of config.json (0644 under the usual umask). The weights come out
    of a private temporary file (0600), so another user could read the config but not the model."""
    mode = (folder / "config.json").stat().st_mode & 0o777
    for file in folder.rglob("*"):
        if file.is_file():
            file.chmod(mode)


def point_latest(out: Path):
    link, tmp_link = out.parent / "latest", out.parent / f".latest.tmp{os.getpid()}"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    tmp_link.symlink_to(out.name)
    os.replace(tmp_link, link)  # atomic on POSIX
