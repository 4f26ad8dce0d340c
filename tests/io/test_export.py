"""Exports give back what was read: each input shape, selected whole and exported in its own shape, round-trips.

The record-shape tests are plain Python; one real run (the packaged model, the session's
local Spark) over a small mixed corpus checks the round trip, the Parquet folder `datasets`
loads with its card, and that two exports of one run are byte-identical.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import ExportConfig
from mdaq_spark.errors import InputError
from mdaq_spark.io import export as X
from mdaq_spark.report.run_stats import RunStats
from mdaq_spark.rundir import SELECTED, RunDir
from tests.test_pipeline import _run

SYSTEM = {"role": "system", "content": "Du bist ein hilfreicher Assistent."}
CALL = [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]


def _turns(record: dict) -> list[dict]:
    """What the reader stores of an OpenAI record: first exchange out, every other turn in history."""
    from mdaq_spark.config import ColumnsConfig
    from mdaq_spark.io.records import AdapterSettings, openai

    (sample,) = openai(record, AdapterSettings(ColumnsConfig(), 10_000))
    content = X.Content(sample.instruction, sample.input, sample.response, sample.history)
    return [_present(m) for m in X.openai_record(content)["messages"]]


def _present(turn: dict) -> dict:
    """A turn without the keys every exported turn carries empty (null) when it has nothing for them."""
    return {k: v for k, v in turn.items() if v is not None or k == "content"}


@pytest.mark.parametrize(
    "messages",
    [
        [SYSTEM, {"role": "user", "content": "Hallo?"}, {"role": "assistant", "content": "Hallo!"}],
        [  # a greeting before the question stays before it
            {"role": "assistant", "content": "How can I help?"},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Sunny."},
        ],
        [  # tool turns between the question and its answer stay between them
            SYSTEM,
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": CALL},
            {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
            {"role": "assistant", "content": "21 degrees."},
            {"role": "user", "content": "And tomorrow?"},
            {"role": "assistant", "content": "No forecast yet."},
        ],
        [  # a multi-turn conversation with tools in its second exchange
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": CALL},
            {"role": "tool", "tool_call_id": "c1", "name": "weather", "content": "21"},
            {"role": "assistant", "content": "21."},
        ],
    ],
)
def test_openai_turns_come_back_in_order(messages):
    assert _turns({"messages": messages}) == messages


EMPTY_TURN = {"tool_calls": None, "tool_call_id": None, "name": None}


def test_every_record_of_a_shape_has_every_key():
    assert X.alpaca_record(X.Content("Sum 2 and 3.", "", "5", "[]")) == {
        "instruction": "Sum 2 and 3.",
        "input": "",
        "output": "5",
        "system": "",
        "history": [],
        "tools": None,
    }
    history = json.dumps(
        [SYSTEM, {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}], sort_keys=True
    )
    assert X.alpaca_record(X.Content("u1", "", "a1", history)) == {
        "instruction": "u2",
        "input": "",
        "output": "a2",
        "system": SYSTEM["content"],
        "history": [["u1", "a1"]],
        "tools": None,
    }
    # an Alpaca input becomes part of the user turn of a conversational shape
    assert X.sharegpt_record(X.Content("Translate.", "Hallo", "Hello", "[]")) == {
        "conversations": [
            {"from": "human", "value": "Translate.\nHallo", **EMPTY_TURN},
            {"from": "gpt", "value": "Hello", **EMPTY_TURN},
        ],
        "system": "",
        "tools": None,
    }


def test_top_level_system_tools_and_turn_names_reach_the_exports():
    tools = json.dumps([{"type": "function", "function": {"name": "weather", "parameters": {}}}])
    content = X.Content(
        "Hi",
        "",
        "Hello",
        "[]",
        system="Be brief.",
        tools=tools,
        prompt_fields=json.dumps({"name": "ana", "weight": 1}),
    )
    sharegpt = X.sharegpt_record(content)
    assert (sharegpt["system"], sharegpt["tools"]) == ("Be brief.", tools)  # LLaMA-Factory's system and tools columns
    assert sharegpt["conversations"][0]["name"] == "ana"
    openai = X.openai_record(content)
    assert [(m["role"], m["content"], m["name"]) for m in openai["messages"]] == [
        ("system", "Be brief.", None),
        ("user", "Hi", "ana"),
        ("assistant", "Hello", None),
    ]
    assert openai["tools"] == tools
    assert X.alpaca_record(content)["system"] == "Be brief."


def test_every_turn_key_reaches_the_conversational_exports_and_alpaca_says_what_it_leaves_out():
    history = json.dumps([{"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2", "weight": 1}])
    content = X.Content("u1", "", "a1", history, response_fields=json.dumps({"weight": 0, "meta": {"k": 1}}))
    keys = {"meta": "json", "weight": "int"}
    messages = X.openai_record(content, keys)["messages"]
    assert [(m["role"], m["weight"], m["meta"]) for m in messages] == [
        ("user", None, None),
        ("assistant", 0, '{"k": 1}'),
        ("user", None, None),
        ("assistant", 1, None),
    ]
    turns = X.sharegpt_record(content, keys)["conversations"]
    assert [t["weight"] for t in turns] == [None, 0, None, 1]
    # each file goes through the schema with those keys typed; without them a key would not fit
    assert X.encode_file("parquet", [X.openai_record(content, keys)], False, keys)
    with pytest.raises(ValueError, match=r"outside the format.s schema: \[.meta., .weight.\]"):
        X.encode_file("parquet", [X.openai_record(content, keys)], False, {})
    assert X._format_turn_keys("alpaca", keys, "out") == ({}, ["meta", "weight"])
    assert X._format_turn_keys("openai", keys, "out") == (keys, [])
    with pytest.raises(InputError, match="'from', a key of the sharegpt format's own turns"):
        X._format_turn_keys("sharegpt", {"from": "string"}, "out")


def test_tool_calls_take_the_openai_shape_or_stop_the_export():
    calls = [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]
    assert X.tool_calls(calls, "s") == [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    ]
    with pytest.raises(InputError, match="sample 7 of a.jsonl: tool calls outside the OpenAI shape"):
        X.tool_calls([{"id": "c1", "index": 0, "function": {"name": "w"}}], "sample 7 of a.jsonl")


def test_metadata_stays_under_its_own_key():
    row = {
        S.INSTRUCTION: "q",
        S.INPUT: "",
        S.RESPONSE: "a",
        S.HISTORY: "[]",
        S.SAMPLE_ID: "id1",
        S.LANG: "en",
        S.QSM_SCORE: 0.5,
        S.CLUSTER_ID: 3,
        S.SELECTION_REASON: "quality",
    }
    out = X.record("openai", row, with_metadata=True)
    assert set(out) == {"messages", "tools", X.METADATA_KEY}
    # a selection written before exchanges were scored has no turn scores: the keys are there, null
    assert out[X.METADATA_KEY] == {"sample_id": "id1", "lang": "en", "qsm_score": 0.5, "cluster_id": 3,
                                   "selection_reason": "quality",
                                   "turn_scores": None, "weakest_turn": None, "extra": None,
                                   "scorer_scores": None}  # fmt: skip
    assert set(X.record("alpaca", row)) == {"instruction", "input", "output", "system", "history", "tools"}
    # several scorers: each one's raw score under its name, typed in Parquet
    scored = X.record("openai", {**row, S.SCORER_SCORES: {"qsm": 0.9, "length#2": 5.1}}, with_metadata=True)
    data = X.encode_file("parquet", [scored], True, {}, ("qsm", "length#2"))
    (back,) = pq.read_table(io.BytesIO(data)).to_pylist()
    assert back[X.METADATA_KEY][S.SCORER_SCORES] == {"qsm": 0.9, "length#2": 5.1}


def test_a_card_names_no_local_path_and_the_hubs_size_bucket():
    from mdaq_spark.io import dataset_card as C

    assert C.public({"paths": ["/home/u/corpus/", "s3a://bucket/x/y.jsonl", "rel/dir"], "k": 3}) == {
        "paths": ["corpus", "y.jsonl", "rel/dir"],
        "k": 3,
    }
    assert C.public_command("/opt/venv/bin/mdaq run -i /data/in --output=/data/out --set output.store=/s/store") == (
        "mdaq run -i in --output=out --set output.store=store"
    )
    assert [C.size_category(n) for n in (0, 999, 1_000, 123_456, 10**13)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "100K<n<1M",
        "n>1T",
    ]


# ---------------------------------------------------------------------- a real run

ALPACA = [
    {"instruction": "Name three primary colours.", "input": "", "output": "Red, blue and yellow."},
    {
        "instruction": "Translate to German.",
        "input": "Good morning, my friend.",
        "output": "Guten Morgen, mein Freund.",
    },
    {"instruction": "Was ist die Hauptstadt von Frankreich?", "input": "", "output": "Die Hauptstadt ist Paris."},
    {"instruction": "Écris une phrase sur la mer.", "input": "", "output": "La mer est calme et bleue ce matin."},
    {
        "instruction": "Summarise the text.",
        "input": "The cat sat on the mat all day  long.",
        "output": "A cat rested.",
    },
    {"instruction": "¿Cuántos días tiene una semana?", "input": "", "output": "Una semana tiene siete días."},
    {"instruction": "Give an antonym of 'hot'.", "input": "", "output": "Cold."},
    {"instruction": "Nenne ein Haustier.", "input": "", "output": "Ein Hund ist ein beliebtes Haustier."},
    {"instruction": "Write a haiku about rain.", "input": "", "output": "Soft rain on the roof\nthe garden drinks"},
    {"instruction": "What is 12 times 12?", "input": "", "output": "12 times 12 is 144."},
]
SHAREGPT = [
    {
        "conversations": [
            {"from": "system", "value": "You are a patient maths tutor."},
            {"from": "human", "value": "What is a prime number?"},
            {"from": "gpt", "value": "A whole number above one whose only divisors are one and itself."},
            {"from": "human", "value": "Is 9 prime?"},
            {"from": "gpt", "value": "No, 9 is 3 times 3."},
        ]
    },
    {
        "conversations": [
            {"from": "human", "value": "Wie spät ist es in Tokio, wenn es in Berlin Mittag ist?"},
            {"from": "gpt", "value": "Im Winter ist es dann 20 Uhr in Tokio."},
        ]
    },
    {
        "conversations": [
            {"from": "gpt", "value": "Bonjour ! Comment puis-je vous aider ?"},
            {"from": "human", "value": "Donne-moi une recette de crêpes."},
            {"from": "gpt", "value": "Mélangez farine, œufs, lait et une pincée de sel, puis faites cuire."},
        ]
    },
    {
        "conversations": [
            {"from": "human", "value": "Tell me a fact about octopuses."},
            {"from": "gpt", "value": "Octopuses have three hearts."},
            {"from": "human", "value": "And another?"},
            {"from": "gpt", "value": "Their blood is blue because it carries copper."},
            {"from": "human", "value": "Thanks!"},
            {"from": "gpt", "value": "You are welcome."},
        ]
    },
    {
        "conversations": [
            {"from": "system", "value": "Responde siempre en español."},
            {"from": "human", "value": "¿Qué es la fotosíntesis?"},
            {"from": "gpt", "value": "Es el proceso con el que las plantas convierten la luz en energía."},
        ]
    },
    {
        "conversations": [
            {"from": "human", "value": "List two uses of  copper."},
            {"from": "gpt", "value": "Electrical wiring and plumbing pipes."},
        ]
    },
    {  # LLaMA-Factory's ShareGPT: the system prompt and the tool definitions beside the conversation
        "conversations": [
            {"from": "human", "value": "Which tool tells me the weather?"},
            {"from": "gpt", "value": "The weather tool does, given a city."},
        ],
        "system": "You describe the tools you have.",
        "tools": '[{"name": "weather", "description": "Current weather", "parameters": {"type": "object"}}]',
    },
]
OPENAI = [
    {
        "messages": [
            {"role": "system", "content": "You are a travel assistant."},
            {"role": "user", "content": "What is the weather in Paris today?"},
            {"role": "assistant", "content": None, "tool_calls": CALL},
            {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21, "sky": "clear"}'},
            {"role": "assistant", "content": "It is 21 degrees and clear in Paris today."},
        ]
    },
    {
        "messages": [
            {"role": "system", "content": "Antworte knapp."},
            {"role": "user", "content": "Wie viele Beine hat eine Spinne?"},
            # OpenAI's fine-tuning format: a trainer learns from the second answer only
            {"role": "assistant", "content": "Eine Spinne hat acht Beine.", "weight": 0},
            {"role": "user", "content": "Und ein Käfer?"},
            {"role": "assistant", "content": "Ein Käfer hat sechs Beine.", "weight": 1},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Explain recursion in one sentence."},
            {
                "role": "assistant",
                "content": "Recursion is a function solving a problem by calling itself on a part.",
                "reasoning_content": "One sentence: define it by self-reference.",
            },
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Quelle est la plus haute montagne d'Europe ?"},
            {"role": "assistant", "content": "Le mont Elbrouz, dans le Caucase, culmine à 5 642 mètres."},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Say hello to me by name, please.", "name": "ana"},
            {"role": "assistant", "content": "Hello, Ana! Nice to meet you."},
        ]
    },
    {
        "messages": [
            {"role": "system", "content": "You answer with code only."},
            {"role": "user", "content": "Reverse a list in Python."},
            {"role": "assistant", "content": "items[::-1]"},
        ]
    },
]
FILES = {
    "alpaca": ("alpaca.jsonl", ALPACA),
    "sharegpt": ("sharegpt.json", SHAREGPT),
    "openai": ("openai.jsonl", OPENAI),
}


def _normalised(value):
    if isinstance(value, str):
        return S.normalise_text(value)
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def _key(record: dict) -> str:
    return json.dumps(_normalised(record), ensure_ascii=False, sort_keys=True)


def _read_jsonl(folder: Path) -> list[dict]:
    files = sorted((folder / X.DATA_DIR).glob("*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text("utf-8").splitlines()]


def _as_read(record: dict) -> dict:
    """An exported record without the keys it carries empty, as the input record had them."""
    out = {}
    for key, value in record.items():
        if value is None or (key, value) in (("system", ""), ("history", [])):
            continue
        out[key] = [_present(t) for t in value] if key in ("messages", "conversations") else value
    return out


@pytest.fixture(scope="module")
def exported_run(spark, model_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, records in FILES.values():
        text = json.dumps(records, ensure_ascii=False) if name.endswith(".json") else "".join(
            json.dumps(r, ensure_ascii=False) + "\n" for r in records
        )  # fmt: skip
        (corpus / name).write_text(text, encoding="utf-8")
    exports = "[" + ", ".join(f"{{format: {f}, with_metadata: true}}" for f in FILES) + ", {format: parquet}]"
    # every sample kept: the whole budget, and flags only rank (demote), never drop
    stats = _run(
        spark, model_cache, [corpus], root / "run", "selection.budget_fraction=1.0", f"output.export={exports}"
    )
    return root / "run", stats


def test_each_shape_round_trips_through_a_whole_selection(spark, exported_run):
    run, stats = exported_run
    assert stats["counts"]["quarantined"] == 0 and stats["counts"]["exact_duplicates"] == 0
    assert stats["counts"]["selected"] == sum(len(records) for _, records in FILES.values())
    sources = {
        r[S.SAMPLE_ID]: r[S.SOURCE].rsplit("/", 1)[-1]
        for r in spark.read.parquet(str(run / SELECTED)).select(S.SAMPLE_ID, S.SOURCE).collect()
    }
    for shape, (name, records) in FILES.items():
        exported = _read_jsonl(run / "export" / shape)
        assert len(exported) == stats["counts"]["selected"]
        assert all(set(r[X.METADATA_KEY]) == {*X.METADATA_COLUMNS, *X.OPTIONAL_METADATA} for r in exported)
        # each exchange's score in turn order: the sample's score is their mean, the weakest turn named
        for r in (r[X.METADATA_KEY] for r in exported):
            turns = r[S.TURN_SCORES]  # scoring.aggregate: mean (the default); the weakest turn named apart
            assert r[S.QSM_SCORE] == pytest.approx(sum(turns) / len(turns), abs=1e-12)
            assert min(turns) == turns[r[S.WEAKEST_TURN]]
            assert r[S.SCORER_SCORES] == {"qsm": r[S.QSM_SCORE]}  # one scorer: its raw score is the sample's
        mine = [
            _as_read({k: v for k, v in r.items() if k != X.METADATA_KEY})
            for r in exported
            if sources[r[X.METADATA_KEY][S.SAMPLE_ID]] == name
        ]
        want = sorted(records, key=_key)
        got = sorted(mine, key=_key)
        assert len(got) == len(want), shape
        for w, g in zip(want, got, strict=True):  # field by field, whitespace normalised
            assert set(g) == set(w), (shape, w, g)
            for field in w:
                assert _normalised(g[field]) == _normalised(w[field]), (shape, field)
    assert [e["format"] for e in stats["exports"]] == [*FILES, "parquet"]
    assert "export" in stats["stage_seconds"]


def test_every_export_folder_loads_whole_with_datasets(exported_run, tmp_path):
    """Each folder through its card, though its first file (de) has no tool calls and a later one (en) has."""
    import datasets

    from mdaq_spark.io.export_schema import export_schema

    run, stats = exported_run
    openai = run / "export" / "openai" / X.DATA_DIR
    calls = {f.name.split("-")[0]: 'tool_calls": [' in f.read_text("utf-8") for f in sorted(openai.iterdir())}
    assert calls["en"] and not calls[min(calls)], calls  # the languages' files differ in which fields they fill
    for spec in stats["config"]["output"]["export"]:
        folder = run / "export" / spec["format"]
        ds = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "hf"))
        assert ds.num_rows == stats["counts"]["selected"], spec
        turn_keys = next(e["turn_keys"] for e in stats["exports"] if e["path"].endswith("/" + spec["format"]))
        schema = export_schema(spec["format"], spec["with_metadata"], turn_keys, scorers=("qsm",))
        assert ds.features == datasets.Features.from_arrow_schema(schema)
        lang, entry = max(stats["per_language"].items(), key=lambda kv: kv[1]["selected_total"])
        one = datasets.load_dataset(str(folder), lang, split="train", cache_dir=str(tmp_path / "hf"))
        assert one.num_rows == entry["selected_total"]
    # the typed tool calls survive the load: a template can iterate them
    messages = datasets.load_dataset(str(run / "export" / "openai"), split="train", cache_dir=str(tmp_path / "hf"))
    names = {c["function"]["name"] for row in messages for m in row["messages"] for c in m["tool_calls"] or []}
    assert names == {"weather"}


def test_parquet_export_matches_the_openai_export_and_carries_a_card(exported_run, model_cache, tmp_path):
    import datasets
    import yaml

    run, stats = exported_run
    folder = run / "export" / "parquet"
    total = stats["counts"]["selected"]
    by_files = datasets.load_dataset(
        "parquet", data_files=str(folder / X.DATA_DIR / "*.parquet"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert by_files.num_rows == total
    assert by_files.column_names == ["messages", "tools"]
    roles = {m["role"] for row in by_files for m in row["messages"]}
    assert {"system", "user", "assistant", "tool"} <= roles
    # the typed column holds the same conversations as the openai export, turn for turn, tool calls typed
    typed = sorted(_key(row) for row in by_files)
    openai = sorted(
        _key({k: v for k, v in r.items() if k != X.METADATA_KEY}) for r in _read_jsonl(run / "export" / "openai")
    )
    assert typed == openai

    card = (folder / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["license"] == "unknown" and meta["size_categories"] == ["n<1K"]
    assert set(meta["language"]) == {lg for lg in stats["per_language"] if lg != "und"}
    assert {c["config_name"] for c in meta["configs"]} == {"default", *stats["per_language"]}
    assert stats["stage_info"]["score"]["model_fingerprint"] in card
    assert stats["stage_info"]["encode"]["encoder_fingerprint"] in card
    lang, entry = max(stats["per_language"].items(), key=lambda kv: kv[1]["selected_total"])
    assert f"| {lang} | {entry['selected_total']} |" in card
    # a card leaves the machine: no local path in it (run directory, corpus, model cache, QSM head)
    for local in (str(run.parent), str(model_cache), stats["stage_info"]["score"]["qsm_head"]):
        assert local not in card, local
    assert not [line for line in card.splitlines() if re.search(r"[\s`=\"']/", line)]  # no absolute path left


def _tiny_causal_lm(folder: Path, texts: list[str]) -> str:
    """A randomly initialised one-layer Llama and a word-level tokenizer trained on `texts`, saved to `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>", "<call>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials))
    # the template iterates each turn's tool calls: it fails on calls stored as JSON text
    template = (
        "{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] or '' }}"
        "{% for c in m['tool_calls'] or [] %} <call> {{ c['function']['name'] }} {{ c['function']['arguments'] }}"
        "{% endfor %} </s> {% endfor %}{% if add_generation_prompt %}<s> assistant {% endif %}"
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.chat_template = template
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("file_format", ["openai", "parquet"])
def test_trl_prepares_the_export_for_training(exported_run, tmp_path, file_format):
    """TRL's SFTTrainer tokenises the export with a chat template, tool calls included, and takes one step."""
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    run, stats = exported_run
    texts = [f.read_text("utf-8") for f in sorted((run / "export" / "openai" / X.DATA_DIR).iterdir())]
    model = _tiny_causal_lm(tmp_path / "model", texts)
    tokenizer = AutoTokenizer.from_pretrained(model)
    data = datasets.load_dataset(str(run / "export" / file_format), split="train", cache_dir=str(tmp_path / "hf"))
    args = SFTConfig(
        output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, report_to="none",
        use_cpu=True, save_strategy="no", logging_strategy="no", max_length=256, dataset_num_proc=None,
    )  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    prepared = trainer.train_dataset
    assert prepared.num_rows == stats["counts"]["selected"]
    call = tokenizer.convert_tokens_to_ids("<call>")
    with_calls = sum(call in ids for ids in prepared["input_ids"])
    assert (
        with_calls == sum(any(m["tool_calls"] for m in row["messages"]) for row in data) == 1
    )  # the one conversation that called a tool
    assert trainer.train().global_step == 1


def test_two_exports_of_one_run_are_byte_identical_and_sharded(spark, exported_run, tmp_path):
    run, stats = exported_run
    rundir = RunDir(str(run), None, spark)
    typed = RunStats.from_json(stats)
    for file_format in ("sharegpt", "parquet"):
        outs = []
        for name in ("a", "b"):
            spec = ExportConfig(format=file_format, path=str(tmp_path / file_format / name), max_rows_per_file=2)
            result = X.export_selection(spark, rundir, spec, typed)
            root = Path(result["path"])
            outs.append({str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()})
        assert outs[0] == outs[1], file_format
        shards = [n for n in outs[0] if n != X.CARD_FILE]
        assert all(n.startswith(f"{X.DATA_DIR}/") for n in shards)
        assert len(shards) == sum((e["selected_total"] + 1) // 2 for e in stats["per_language"].values())
    # an export replaces an earlier export, never a folder of other files
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="no mdaq export"):
        X.export_selection(spark, rundir, ExportConfig(format="alpaca", path=str(foreign)), typed)
    assert (foreign / "notes.txt").is_file()


def test_stats_json_has_one_typed_reader_that_fails_on_a_renamed_key(spark, exported_run):
    """The report, inspect, diff and the cards read stats.json through RunStats: a renamed key fails, never reads 0.

    Here for the run this module shares: no other test needs a finished run of its own for it.
    """
    from mdaq_spark.report.html import render

    run, stats = exported_run
    rundir = RunDir(str(run), None, spark)
    typed = rundir.read_stats()
    assert typed.to_json() == stats  # what the job returned is what the file holds, key for key
    assert [e.format for e in typed.exports] == [*FILES, "parquet"]
    lang = next(iter(stats["per_language"]))
    renamed = json.loads(json.dumps(stats))
    entry = renamed["per_language"][lang]
    entry["n_clusters"] = entry.pop("clusters")
    with pytest.raises(
        InputError, match=rf"per_language\.{lang}: missing keys \['clusters'\], unknown keys \['n_clusters'\]"
    ):
        RunStats.from_json(renamed)
    # a stats.json from before the keys added since (an upgrade, then a diff against the last run) reads
    older = json.loads(json.dumps(stats))
    del older["scorers"]
    for export in older["exports"]:
        del export["turn_keys"], export["turn_keys_not_written"]
    read = RunStats.from_json(older)
    assert read.scorers == {} and read.exports[0].turn_keys == {} and read.counts == typed.counts
    page = render(typed)
    assert f"<td class='l'>{lang}</td><td>{stats['per_language'][lang]['samples']}</td>" in page
