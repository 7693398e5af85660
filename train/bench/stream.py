"""Streaming benchmark: `python -m train.predict` on a large JSONL keeps its memory flat and writes its
output as it goes.

    python -m train.bench.stream                                  # a tiny random model, 50 MB of input
    python -m train.bench.stream --model-dir models/latest --mb 5  # a real model (far slower per MB)
    python -m train.bench.stream --mb 50 threads=1 chunk_size=512  # extra arguments go to train.predict

Writes about `--mb` MB of short paragraphs as JSONL to a temporary folder, runs the prediction command
line on it in its own process, samples that process's resident memory (RSS) and the size of the
output it is writing (under a temporary name until it is renamed) every 0.5 s, and prints the RSS
at 10%, 50% and 90% of the run and the output size over time. A measurement, not a test.
"""

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("seoul pyongyang moscow washington beijing summit talks sanctions treaty missile launch "
         "officials said on the of a in and week ministry statement delegation visit military "
         "cooperation economic trade border families reunion dialogue hopeful alarming reported").split()


def write_corpus(path: Path, megabytes: float, seed: int = 0) -> int:
    """About `megabytes` MB of {"id", "text"} lines of 8-40 words; returns the number of lines."""
    rng, size, n = random.Random(seed), 0, 0
    with path.open("w", encoding="utf-8") as f:
        while size < megabytes * 1e6:
            line = json.dumps({"id": f"p{n}", "text": " ".join(rng.choices(WORDS, k=rng.randint(8, 40)))}) + "\n"
            f.write(line)
            size += len(line)
            n += 1
    return n


def tiny_model(folder: Path) -> Path:
    """A random 2-layer BERT (hidden 32) with a word-level tokenizer and the news label schema: a
    model folder that train.predict loads, for measuring the streaming rather than the model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from train.data import data_config
    from train.labels import LabelSchema

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(WORDS)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<pad>", mask_token="<mask>", model_max_length=64)
    schema = LabelSchema(data_config("news").schema)
    names = schema.output_names()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=1,
                        num_labels=len(names), id2label=dict(enumerate(names)),
                        label2id={n: i for i, n in enumerate(names)}, problem_type="multi_label_classification")
    config.task_schema, config.text_prefix, config.max_seq_length = schema.to_list(), "", 64
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def watch(command: list[str], output: Path, every: float = 0.5) -> list[tuple[float, int, int]]:
    """Run `command`; every `every` seconds record (seconds, RSS bytes, output bytes) until it exits."""
    import psutil

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched, start, samples = psutil.Process(proc.pid), time.perf_counter(), []
    try:
        while proc.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)])
            except psutil.NoSuchProcess:
                break
            partial = list(output.parent.glob(f".{output.name}.tmp*"))  # the output while it is being written
            written = sum(p.stat().st_size for p in partial if p.exists()) if partial else (
                output.stat().st_size if output.exists() else 0)
            samples.append((time.perf_counter() - start, rss, written))
            time.sleep(every)
        stderr = proc.communicate()[1]
    finally:
        if proc.poll() is None:  # interrupted: stop the run we started
            proc.kill()
    if proc.returncode != 0:
        raise SystemExit(f"train.predict failed ({proc.returncode}):\n{stderr[-3000:]}")
    samples.append((time.perf_counter() - start, 0, output.stat().st_size))  # renamed into place
    return samples


def at_fraction(samples, fraction: float):
    """The sample nearest to `fraction` of the run's duration."""
    target = fraction * samples[-1][0]
    return min(samples[:-1], key=lambda s: abs(s[0] - target))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m train.bench.stream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="a model folder (default: a tiny random model made for the run)")
    parser.add_argument("--mb", type=float, default=50, help="input size in MB (default 50)")
    parser.add_argument("overrides", nargs="*", help="extra train.predict arguments, e.g. threads=1")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the temporary folder
    with tempfile.TemporaryDirectory(prefix="bench_stream_") as tmp:
        tmp = Path(tmp)
        model_dir = Path(args.model_dir).resolve() if args.model_dir else tiny_model(tmp / "tiny-model")
        source, output = tmp / "input.jsonl", tmp / "out.jsonl"
        lines = write_corpus(source, args.mb)
        print(f"input: {source.stat().st_size / 1e6:.1f} MB, {lines:,} paragraphs; model: "
              f"{args.model_dir or 'tiny random BERT (2 layers, hidden 32)'}")
        samples = watch([sys.executable, "-m", "train.predict", f"model_dir={model_dir}", f"input={source}",
                         f"output={output}", "progress=false", *args.overrides], output)
        seconds, out_mb = samples[-1][0], output.stat().st_size / 1e6
        running = samples[:-1]
        print(f"run: {seconds:.1f} s, {lines / seconds:,.0f} paragraphs/s, output {out_mb:.1f} MB")
        print("RSS: " + ", ".join(f"{f:.0%} of the run {at_fraction(samples, f)[1] / 2**20:.0f} MiB"
                                  for f in (0.1, 0.5, 0.9))
              + f"; peak {max(s[1] for s in running) / 2**20:.0f} MiB")
        print(f"{'time':>8} {'output':>10} {'RSS':>9}")
        for f in [i / 10 for i in range(1, 10)]:
            t, rss, written = at_fraction(samples, f)
            print(f"{t:7.1f}s {written / 1e6:8.1f}MB {rss / 2**20:6.0f}MiB")
        print(f"{seconds:7.1f}s {out_mb:8.1f}MB  (renamed into place)")


if __name__ == "__main__":
    main()
