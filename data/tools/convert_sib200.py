"""SIB-200 TSV -> JSONL in the corpus format (field `topic`: one of 7 labels), per language.

    python data/tools/convert_sib200.py ../shared/raw/sib200 data/sib200
"""

import csv
import json
import sys
from pathlib import Path

LANGS = {"eng_Latn": "en", "spa_Latn": "es", "kor_Hang": "ko"}
SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def main(raw: Path, out: Path):
    for folder, lang in LANGS.items():
        for tsv, split in SPLITS.items():
            rows = list(csv.DictReader((raw / folder / f"{tsv}.tsv").open(encoding="utf-8"), delimiter="\t"))
            target = out / lang / f"{split}.jsonl"
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps({"id": f"sib200-{lang}-{r['index_id']}", "text": r["text"], "lang": lang,
                                        "topic": r["category"], "source": "SIB-200 (FLORES-200)",
                                        "doc_id": f"sib200-{lang}-{r['index_id']}"}, ensure_ascii=False) + "\n")
            print(target, len(rows))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
