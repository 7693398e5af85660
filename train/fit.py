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

from train.base_model import resolve_model_path
from train.data import DataError, load_split, project_path, split_paths
from train.files import remove_stale_temps, temp_path
from train.model_folder import quiet_transformers
from train.labels import MULTI, LabelSchema, check_schema_matches
from train.metrics import scores_at_half

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
    args = TrainingArguments(
        output_dir=str(project_path(cfg.paths.work_dir) / "checkpoints"), eval_strategy="epoch",
        save_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="macro_f1",
        greater_is_better=True, seed=cfg.seed, data_seed=cfg.seed, report_to="none", **trainer_args)
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
    if should_freeze(cfg.model.freeze_word_embeddings):
        model.get_input_embeddings().weight.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model: %s, %.1fM trainable of %.1fM parameters", cfg.model.name_or_path, trainable / 1e6,
             model.num_parameters() / 1e6)

    train_set = encode(train_records, schema, tokenizer, cfg.model, "train")
    val_set = encode(val_records, schema, tokenizer, cfg.model, "validation")

    trainer = Trainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
        compute_loss_func=MultiTaskLoss(schema, train_records, cfg.loss.balance_classes),
        compute_metrics=partial(task_metrics, schema),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience)])
    trainer.loss_is_scaled_for_ga = False  # our loss is a batch mean: let the Trainer divide by GA steps

    speed = trainer.train(resume_from_checkpoint=resume).metrics
    metrics = {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items()}
    metrics.update({k: v for k, v in speed.items() if k in ("train_runtime", "train_samples_per_second")})
    metrics["epochs_run"] = trainer.state.epoch
    if trainer.is_world_process_zero():
        out = project_path(cfg.paths.models_dir) / cfg.run_name
        tmp = write_model_folder(trainer, cfg, schema, metrics, out)
        # The export reads the saved weights: drop the training state first, so that the export's
        # peak memory does not come on top of the Trainer's (it made `make train` peak at 8 GB).
        del trainer, model
        finish_model_folder(tmp, out, cfg)
        print(summary(out, metrics, schema))
    return metrics


def summary(out: Path, metrics: dict, schema: LabelSchema) -> str:
    """The short report printed at the end of a run (validation split, best epoch, threshold 0.5)."""
    lines = [f"\nmodel saved to {out}", f"validation (best epoch, threshold 0.5):"]
    for t in schema.tasks:
        extra = "micro_f1" if t.kind == MULTI else "accuracy"
        lines.append(f"  {t.name:<10} macro-F1 {metrics[f'{t.name}_macro_f1']:.3f}   "
                     f"{extra} {metrics[f'{t.name}_{extra}']:.3f}")
    lines.append(f"  {'mean':<10} macro-F1 {metrics['macro_f1']:.3f}")
    lines.append(f"trained {metrics['epochs_run']:.0f} epochs in {metrics['train_runtime'] / 60:.1f} min "
                 f"({metrics['train_samples_per_second']:.1f} samples/s)")
    return "\n".join(lines)


def limit(records, n, seed):
    """A seeded sample of at most `n` records (all of them when n is None)."""
    if n is None or n >= len(records):
        return records
    keep = np.random.default_rng(seed).choice(len(records), size=n, replace=False)
    return [records[i] for i in sorted(keep)]


def fast_bf16() -> bool:
    """bf16 autocast where the hardware runs it natively: a GPU that supports it, or a CPU with
    AVX-512 BF16 / AMX (about 1.8x the fp32 training speed on 2 cores; weights stay fp32)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def should_freeze(setting) -> bool:
    """`auto`: freeze the word embeddings on CPU, where they are 96M of e5-small's 118M parameters."""
    return (not torch.cuda.is_available()) if setting == "auto" else bool(setting)


def encode(records, schema, tokenizer, model_cfg, split):
    """Tokenised `datasets.Dataset` with a float target vector per record (dynamic padding later)."""
    from datasets import Dataset

    texts = [model_cfg.text_prefix + r["text"] for r in records]
    encoded = tokenizer(texts, truncation=True, max_length=model_cfg.max_length)
    full = tokenizer(texts, truncation=False)["input_ids"]
    cut = sum(len(ids) > model_cfg.max_length for ids in full)
    if cut:  # never silent: training sees the first max_length tokens of long paragraphs
        log.warning("%s: %d of %d paragraphs are longer than max_length=%d tokens and were truncated "
                    "for training (inference windows long text instead)", split, cut, len(texts),
                    model_cfg.max_length)
    columns = dict(encoded)
    columns["labels"] = [schema.encode(r) for r in records]
    return Dataset.from_dict(columns)


class MultiTaskLoss:
    """Sum over tasks: BCE with `pos_weight` on multi-label slices, weighted CE on single-label ones.
    Weights come from the training split's label counts (the classes are far from balanced)."""

    def __init__(self, schema: LabelSchema, train_records, balance: bool):
        self.schema = schema
        self.weights = {}
        targets = np.array([schema.encode(r) for r in train_records])
        for t in schema.tasks:
            if not balance:
                self.weights[t.name] = None
                continue
            positives = targets[:, t.slice].sum(axis=0)
            if t.kind == MULTI:  # negatives / positives, as BCEWithLogitsLoss documents
                weight = (len(targets) - positives) / np.maximum(positives, 1)
            else:  # "balanced": n / (k * count), as scikit-learn's compute_class_weight
                weight = len(targets) / (len(t.labels) * np.maximum(positives, 1))
            self.weights[t.name] = torch.tensor(weight, dtype=torch.float32)

    def __call__(self, outputs, labels, num_items_in_batch=None):
        logits = outputs.logits.float()
        loss = logits.new_zeros(())
        for t in self.schema.tasks:
            z, y = logits[:, t.slice], labels[:, t.slice].float()
            w = self.weights[t.name]
            w = None if w is None else w.to(z.device)
            if t.kind == MULTI:
                loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(z, y, pos_weight=w)
            else:
                loss = loss + torch.nn.functional.cross_entropy(z, y.argmax(dim=1), weight=w)
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


def write_model_folder(trainer, cfg, schema: LabelSchema, metrics: dict, out: Path) -> Path:
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
        saved = LabelSchema.from_model_config(AutoConfig.from_pretrained(tmp))
        if saved != schema or not (tmp / "model.safetensors").is_file():
            raise RuntimeError(f"{tmp}: saved model folder failed its check")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def finish_model_folder(tmp: Path, out: Path, cfg):
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
