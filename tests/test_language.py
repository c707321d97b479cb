"""The language task on a tiny Llama-style model: adapters only, text checks, tokens, perplexity."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_language_model import save_tiny_llama, speeches

from domains import load_domain
from fedflow.config import FederationConfig, LocalTrainConfig
from fedflow.domain import DomainSpec
from fedflow.errors import SiteDataError
from fedflow.expectations import PII_PATTERNS, expectations_from_spec
from fedflow.language.base_model import LanguageModelError, load_tokenizer, locate_base_model
from fedflow.language.lora_model import PAD, lora_language_model
from fedflow.language.options import LanguageModelOptions
from fedflow.language.tokens import tokenise
from fedflow.local import Training, evaluate_local, train_local
from fedflow.params import decode, encode, get_weights, set_weights
from fedflow.rounds import initial_weights
from fedflow.sitedata import read_site_frame
from fedflow.tasks import get_task
from validation import validate_frame

LANGUAGE = get_task("language")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), speeches("hamlet") + speeches("iago"))


@pytest.fixture(scope="module")
def options(tiny_model: Path) -> LanguageModelOptions:
    return LanguageModelOptions(path=str(tiny_model), max_length=32, lora_r=4)


def _spec(options: LanguageModelOptions, **text: object) -> DomainSpec:
    return DomainSpec.model_validate(
        {
            "name": "t",
            "task": "language",
            "target": {"column": "speech"},
            "sites": {"a": "a.csv"},
            "model": options.model_dump(),
            "quality": {"min_rows": 2},
            "text": text,
        }
    )


def _tokens(options: LanguageModelOptions, site: str) -> np.ndarray:
    tokenizer = load_tokenizer(locate_base_model(options))
    return tokenise(speeches(site), tokenizer, max_length=options.max_length)


def test_only_adapters_are_federated_and_the_base_stays_frozen(options: LanguageModelOptions) -> None:
    model = lora_language_model(options)
    weights = get_weights(model)
    adapters, total = model.parameter_counts()
    assert weights and all("lora_" in name for name in weights)
    assert sum(v.size for v in weights.values()) == adapters < total / 10
    # Copies share the frozen base tensors: a second site costs adapters, not a second model.
    other = lora_language_model(options)
    base_a = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    base_b = {n: p for n, p in other.named_parameters() if not p.requires_grad}
    assert base_a.keys() == base_b.keys() and all(base_a[n] is base_b[n] for n in base_a)
    before = {n: p.detach().clone() for n, p in base_a.items()}
    tokens = _tokens(options, "falstaff")[:32]
    train_local(model, tokens, tokens, Training(task=LANGUAGE, config=LocalTrainConfig(batch_size=8), seed=0))
    assert all(torch.equal(before[n], p) for n, p in base_a.items())
    moved = get_weights(model)
    assert any(not np.array_equal(weights[n], moved[n]) for n in weights)
    set_weights(other, decode(encode(moved)))
    np.testing.assert_array_equal(get_weights(other)[next(iter(moved))], moved[next(iter(moved))])


def test_adapters_of_another_shape_are_refused(options: LanguageModelOptions) -> None:
    model = lora_language_model(options)
    wider = lora_language_model(options.model_copy(update={"lora_r": 8}))
    with pytest.raises(ValueError, match="has shape"):
        set_weights(model, get_weights(wider))
    with pytest.raises(ValueError, match="adapter names do not match"):
        set_weights(model, {"base.weight": np.zeros(3, dtype=np.float32)})


def test_initial_adapters_are_seeded_and_leave_the_base_model_unchanged(
    options: LanguageModelOptions,
) -> None:
    a = initial_weights(
        lambda **_: lora_language_model(options), input_dim=0, output_dim=0, options={}, seed=5
    )
    b = initial_weights(
        lambda **_: lora_language_model(options), input_dim=0, output_dim=0, options={}, seed=5
    )
    c = initial_weights(
        lambda **_: lora_language_model(options), input_dim=0, output_dim=0, options={}, seed=6
    )
    assert all(np.array_equal(a[k], b[k]) for k in a) and any(not np.array_equal(a[k], c[k]) for k in a)
    # LoRA's B starts at zero: round 0 is exactly the base model.
    assert all(not v.any() for k, v in a.items() if "lora_B" in k)


def test_tokenise_ends_each_text_and_pads_with_minus_one(options: LanguageModelOptions) -> None:
    tokenizer = load_tokenizer(locate_base_model(options))
    tokens = tokenise(["To be", "or not to be, that is the question " * 10], tokenizer, max_length=16)
    assert tokens.shape == (2, 16) and tokens.dtype == np.int64
    short = tokens[0][tokens[0] != PAD]
    assert short[-1] == tokenizer.eos_token_id and (tokens[0][len(short) :] == PAD).all()
    assert (tokens[1] != PAD).all()  # cut at max_length, no padding
    assert tokens[1][-1] != tokenizer.eos_token_id  # a cut text did not end there


def test_padding_never_counts(options: LanguageModelOptions) -> None:
    model = lora_language_model(options)
    tokens = _tokens(options, "rosalind")[:4]
    out = model(torch.from_numpy(tokens))
    assert out.shape == (4, options.max_length - 1)
    assert (out[torch.from_numpy(tokens[:, 1:] == PAD)] == 0).all()
    assert (out[torch.from_numpy(tokens[:, 1:] != PAD)] < 0).all()


def test_perplexity_by_hand() -> None:
    labels = np.array([[5, 6, 7, PAD], [8, 9, PAD, PAD]])
    logprobs = np.array([[-1.0, -2.0, 0.0], [-3.0, 0.0, 0.0]])
    metrics = LANGUAGE.metrics(labels, logprobs)
    assert metrics["loss"] == pytest.approx(2.0)  # (1 + 2 + 3) / 3 predicted tokens
    assert metrics["perplexity"] == pytest.approx(math.exp(2.0))
    np.testing.assert_allclose(LANGUAGE.example_losses(labels, logprobs), [1.5, 3.0])


def test_local_fine_tuning_lowers_hold_out_perplexity(options: LanguageModelOptions) -> None:
    tokens = _tokens(options, "hamlet")
    train, holdout = tokens[:300], tokens[300:]
    model = lora_language_model(options)
    before = evaluate_local(model, holdout, holdout, task=LANGUAGE)["perplexity"]
    config = LocalTrainConfig(batch_size=16, learning_rate=0.05, optimizer="adam", max_steps=30)
    result = train_local(model, train, train, Training(task=LANGUAGE, config=config, seed=0))
    assert result.steps == 30
    after = evaluate_local(model, holdout, holdout, task=LANGUAGE)["perplexity"]
    assert after < 0.9 * before


def test_text_checks_catch_pii_bad_encoding_and_length(options: LanguageModelOptions) -> None:
    spec = _spec(options, max_chars=200)
    domain = load_domain("language")
    checks = expectations_from_spec(spec)
    clean = pd.DataFrame({"speech": ["Patient reports chest pain since Tuesday.", "No fever."]})
    assert validate_frame(clean, checks, site="a", suite_name="t").success
    cases = {
        "email": "Write to jane.doe@example.org about the results.",
        "phone": "Call the ward on +44 20 7946 0958 tonight.",
        "national id": "NHS number 9434765919 on file.",
        "ssn": "SSN 123-45-6789.",
        "encoding": "Caf\ufffd au lait",
        "length": "x" * 201,
    }
    for case, text in cases.items():
        summary = validate_frame(
            pd.concat([clean, pd.DataFrame({"speech": [text]})]), checks, site="a", suite_name="t"
        )
        assert not summary.success, case
        # The summary says which check failed and how many rows, never the text itself.
        assert text[:10] not in summary.model_dump_json(), case
    assert set(PII_PATTERNS) == {"email_address", "phone_number", "national_id"}
    # Clinical notes are full of dates, times and short numbers: none of them is PII here.
    everyday = [
        "Seen 2024-01-15 10:30 by the registrar.",
        "BP 120/80, HR 72, temp 37.2.",
        "Dose 5 mg at 08:00 and 20:00; review in 12 30 45 min.",
        "Act 2 scene 1, line 1599.",
    ]
    assert validate_frame(pd.DataFrame({"speech": everyday}), checks, site="a", suite_name="t").success
    assert not _spec(options, pii_guard=False).text.pii_guard
    assert domain.spec.text.pii_guard  # on in the shipped template


def test_a_folder_of_notes_is_one_row_per_file(tmp_path: Path, options: LanguageModelOptions) -> None:
    spec = _spec(options)
    notes = tmp_path / "notes"
    (notes / "2026").mkdir(parents=True)
    (notes / "a.txt").write_text("First note.\n", encoding="utf-8")
    (notes / "2026" / "b.txt").write_text("Second note, in a sub-folder.", encoding="utf-8")
    (notes / "ignored.csv").write_text("not a note")
    frame = read_site_frame(notes, spec, site="ward_7")
    # In path order (2026/b.txt before a.txt), stripped of surrounding blank space.
    assert frame["speech"].tolist() == ["Second note, in a sub-folder.", "First note."]
    (notes / "c.txt").write_bytes("caf\xe9".encode("latin-1"))
    # The file is counted, not named: a note's file name can identify a patient.
    with pytest.raises(SiteDataError, match="text file 3 of 3 in the data folder is not UTF-8") as refused:
        read_site_frame(notes, spec, site="ward_7")
    assert "c.txt" not in str(refused.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SiteDataError, match=r"no \.txt files"):
        read_site_frame(empty, spec, site="ward_7")


def test_language_config_errors_name_the_problem(options: LanguageModelOptions) -> None:
    with pytest.raises(ValueError, match="lora_rank"):
        DomainSpec.model_validate(
            {**_spec(options).model_dump(), "model": {**options.model_dump(), "lora_rank": 4}}
        )
    with pytest.raises(ValueError, match="task 'language' cannot be combined with strategy 'scaffold'"):
        DomainSpec.model_validate(
            {**_spec(options).model_dump(), "federation": {"strategy": {"name": "scaffold"}}}
        )
    with pytest.raises(ValueError, match="dp_sgd"):
        DomainSpec.model_validate({**_spec(options).model_dump(), "federation": {"local": {"dp_sgd": {}}}})
    with pytest.raises(ValueError, match="label_flip"):
        DomainSpec.model_validate(
            {**_spec(options).model_dump(), "federation": {"attack": {"kind": "label_flip", "sites": ["a"]}}}
        )
    with pytest.raises(ValueError, match=r"instead of local\.max_steps"):
        FederationConfig.model_validate({"local": {"dp_sgd": {}, "max_steps": 5}})
    with pytest.raises(ValueError, match="declare no features"):
        DomainSpec.model_validate({**_spec(options).model_dump(), "numeric": [{"name": "age"}]})
    with pytest.raises(LanguageModelError, match="is not a folder"):
        locate_base_model(LanguageModelOptions(path="/nonexistent/model"))
    with pytest.raises(ValueError, match="do not fit the base model"):
        lora_language_model(options.model_copy(update={"target_modules": ["no_such_layer"]}))
