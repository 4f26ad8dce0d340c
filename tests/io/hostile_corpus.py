"""A folder of small adversarial input files, each row tagged with what must become of it.

The expectations are the product's promise for each case (kept, or quarantined with a given
reason, or no row at all), written down with the case, not read off the implementation.
Every tag is a unique word ("hx017") placed where it survives: in the instruction of a row
that must be kept, at the start of the raw record of a row that must be quarantined. A row
that carries no tag (the broken tail of a cut-off array) is expected by its file instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

KEPT = "kept"

# long enough that any language detector is sure
EN = "The river runs past the old mill and the children watch the boats go by every summer evening."
DE = "Der Fluss fließt an der alten Mühle vorbei, und die Kinder sehen jeden Sommerabend den Booten zu."


@dataclass
class Expect:
    file: str  # file name inside the corpus folder
    tag: str | None  # None: the row is found by its file and reason alone
    outcome: str  # KEPT or the quarantine reason
    checks: dict = field(default_factory=dict)  # column -> value a kept row must have


@dataclass
class Corpus:
    root: Path
    expected: list[Expect] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)  # file names that must be reported as not read
    _n: int = 0

    def tag(self) -> str:
        self._n += 1
        return f"hx{self._n:03d}"

    def expect(self, file: str, tag: str | None, outcome: str, **checks) -> None:
        self.expected.append(Expect(file, tag, outcome, checks))


def _alpaca(tag: str, text: str = EN, **extra) -> dict:
    return {"instruction": f"{tag} Describe this scene: {text}", "input": "", "output": f"{text} {tag}", **extra}


def _jsonl(path: Path, lines: list[str | bytes], newline: bytes = b"\n") -> None:
    path.write_bytes(newline.join(x if isinstance(x, bytes) else x.encode("utf-8") for x in lines) + newline)


def build(root: Path) -> Corpus:
    root.mkdir(parents=True, exist_ok=True)
    c = Corpus(root)
    _json_lines_cases(c)
    _json_document_cases(c)
    _parquet_cases(c)
    _openai_cases(c)
    _file_cases(c)
    return c


def _json_lines_cases(c: Corpus) -> None:
    name, lines = "lines.jsonl", []

    t = c.tag()  # a UTF-8 byte-order mark at the start of the file is not part of the JSON
    lines.append(b"\xef\xbb\xbf" + json.dumps(_alpaca(t)).encode())
    c.expect(name, t, KEPT)

    t = c.tag()  # nested 5,000 deep: the parser's recursion gives out; one row, not a crash
    lines.append(f'{{"tag": "{t}", "x": {"[" * 5000}1{"]" * 5000}}}')
    c.expect(name, t, "too_deeply_nested_json")

    for value in ("\ud800", "-", "_x", "x" * 300, ""):  # no language at all: detection decides
        t = c.tag()
        lines.append(json.dumps(_alpaca(t, lang=value)))  # json.dumps escapes the lone surrogate
        c.expect(name, t, KEPT, lang="en")

    t = c.tag()  # a language field in any spelling of a real language is kept as its code
    lines.append(json.dumps(_alpaca(t, DE, lang="German")))
    c.expect(name, t, KEPT, lang="de")

    t = c.tag()  # a 5,000-digit integer in a field the job ignores
    lines.append(f'{{"instruction": "{t} Describe this scene: {EN}", "output": "{EN}", "n": {"7" * 5000}}}')
    c.expect(name, t, KEPT)

    lines += ["\t\t", "\f", " \t \f ", ""]  # blank lines: no rows

    t = c.tag()  # only invisible characters: as empty as ""
    lines.append(json.dumps({"tag": t, "instruction": "\u200b\u200f\u2060", "output": EN}))
    c.expect(name, t, "empty_instruction")
    t = c.tag()
    lines.append(json.dumps({"tag": t, "instruction": f"{t} {EN}", "output": " \u200b\u2060\ufeff "}))
    c.expect(name, t, "empty_response")

    t = c.tag()  # too few letters to have a language
    lines.append(json.dumps({"instruction": f"12 + 30 = ? {t}", "output": "42"}))
    c.expect(name, t, KEPT, lang="und")

    t = c.tag()  # Cherokee: a script the detector was not trained on
    lines.append(json.dumps({"instruction": f"ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ ᎠᏍᎦᏯ ᏥᏍᏕᏥ {t}", "output": "ᎣᏏᏲ ᏙᎯᏧ ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ"}))
    c.expect(name, t, KEPT, lang="und")

    t = c.tag()  # a formula: no language the detector could name ("zxx" is ISO 639's "no linguistic content")
    lines.append(json.dumps({"instruction": f"\\int_0^1 x^2 \\, dx = \\frac{{1}}{{3}} {t}", "output": "\\frac{1}{3}"}))
    c.expect(name, t, KEPT, lang_in={"und", "zxx"})

    t = c.tag()  # duplicate keys: the last one wins, as in JSON.parse and Python
    lines.append(f'{{"instruction": "first", "instruction": "{t} Describe this scene: {EN}", "output": "{EN}"}}')
    c.expect(name, t, KEPT, instruction=f"{t} Describe this scene: {EN}")

    t = c.tag()  # U+2028 and U+0085 inside strings are no line breaks
    lines.append(json.dumps(_alpaca(t, EN + "\u2028" + EN + "\u0085end"), ensure_ascii=False))
    c.expect(name, t, KEPT)

    t = c.tag()  # a record truncated in the middle
    lines.append(json.dumps(_alpaca(t))[:60])
    c.expect(name, t, "unparsable_json")
    _jsonl(c.root / name, lines)

    name = "crlf.jsonl"  # Windows line ends
    t1, t2 = c.tag(), c.tag()
    _jsonl(c.root / name, [json.dumps(_alpaca(t1)), json.dumps(_alpaca(t2, DE))], newline=b"\r\n")
    c.expect(name, t1, KEPT, lang="en")
    c.expect(name, t2, KEPT, lang="de")

    name = "24_mixed.jsonl"  # a MIDB record in a file whose name is no language: its language is detected
    t = c.tag()
    midb = {
        "Raw Instruction": f"{t} raw: Describe this scene: {EN}",
        "Raw Input": "",
        "Raw Response": EN,
        "Revised Instruction": f"{t} revised: Describe this scene: {EN}",
        "Revised Input": "",
        "Revised Response": EN + " Indeed.",
    }
    _jsonl(c.root / name, [json.dumps(midb)])
    c.expect(name, f"{t} raw:", KEPT, lang="en", variant="raw")
    c.expect(name, f"{t} revised:", KEPT, lang="en", variant="revised")


def _json_document_cases(c: Corpus) -> None:
    name = "json_lines_inside.json"  # JSON Lines under a .json name, with U+2028 / U+0085 in strings
    tags = [c.tag() for _ in range(3)]
    lines = [json.dumps(_alpaca(t, EN + "\u2028 and \u0085 too"), ensure_ascii=False) for t in tags]
    (c.root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    for t in tags:
        c.expect(name, t, KEPT)

    name = "cut.json"  # an indented array cut off inside its fifth record
    tags = [c.tag() for _ in range(5)]
    text = json.dumps([_alpaca(t) for t in tags], indent=2)
    (c.root / name).write_text(text[: text.index(tags[4]) + 3], encoding="utf-8")
    for t in tags[:4]:
        c.expect(name, t, KEPT)
    c.expect(name, None, "truncated_json_document")

    name = "bom.json"  # a BOM before a JSON array
    t = c.tag()
    (c.root / name).write_bytes(b"\xef\xbb\xbf" + json.dumps([_alpaca(t)]).encode())
    c.expect(name, t, KEPT)


def _parquet_cases(c: Corpus) -> None:
    name = "a_strings.parquet"  # instruction as strings here, as int64 in the next file
    t1, t2 = c.tag(), c.tag()
    pq.write_table(
        pa.table(
            {"tag": [t1, t2], "instruction": [f"{t1} Describe: {EN}", f"{t2} Beschreibe: {DE}"], "output": [EN, DE]}
        ),  # fmt: skip
        c.root / name,
    )
    c.expect(name, t1, KEPT, lang="en", source_file=name)
    c.expect(name, t2, KEPT, lang="de", source_file=name)

    name = "b_ints.parquet"
    t = c.tag()
    pq.write_table(pa.table({"tag": [t], "instruction": pa.array([7], pa.int64()), "output": [EN]}), c.root / name)
    c.expect(name, t, "wrong_type_instruction")

    name = "c_binary.parquet"  # BINARY text: UTF-8 is text, other bytes are no text
    t1, t2 = c.tag(), c.tag()
    pq.write_table(
        pa.table(
            {
                "tag": [t1, t2],
                "instruction": pa.array([f"{t1} {EN}".encode(), b"\xff\xfe\x00bad"], pa.binary()),
                "output": [EN, EN],
            }
        ),  # fmt: skip
        c.root / name,
    )
    c.expect(name, t1, KEPT, instruction=f"{t1} {EN}")
    c.expect(name, t2, "wrong_type_instruction")

    name = "d_nan.parquet"  # a float response, NaN or not, is no text
    t1, t2 = c.tag(), c.tag()
    pq.write_table(
        pa.table(
            {
                "tag": [t1, t2],
                "instruction": [f"{t1} {EN}", f"{t2} {EN}"],
                "output": pa.array([float("nan"), 1.5], pa.float64()),
            }
        ),  # fmt: skip
        c.root / name,
    )
    c.expect(name, t1, "wrong_type_response")
    c.expect(name, t2, "wrong_type_response")

    name = "e_sharegpt.parquet"  # another record shape in the same folder
    t = c.tag()
    conv = [{"from": "human", "value": f"{t} Describe: {EN}"}, {"from": "gpt", "value": EN}]
    pq.write_table(pa.table({"tag": [t], "conversations": [conv]}), c.root / name)
    c.expect(name, t, KEPT, record_format="sharegpt", source_file=name)


def _openai_cases(c: Corpus) -> None:
    name, lines = "openai.jsonl", []

    t = c.tag()  # content as a list of parts, as the OpenAI API allows
    parts = [{"type": "text", "text": f"{t} Describe this scene."}, {"type": "text", "text": EN}]
    lines.append(json.dumps({"messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": EN}]}))
    c.expect(name, t, KEPT, instruction=f"{t} Describe this scene.\n{EN}")

    t = c.tag()  # an assistant turn that only calls a tool, the tool's answer, then the reply
    call = [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]
    messages = [
        {"role": "user", "content": f"{t} What is the weather in Oslo? {EN}"},
        {"role": "assistant", "content": None, "tool_calls": call},
        {"role": "tool", "tool_call_id": "c1", "content": "rain, 8 degrees"},
        {"role": "assistant", "content": f"It rains in Oslo, eight degrees. {EN}"},
    ]
    lines.append(json.dumps({"messages": messages}))
    c.expect(name, t, KEPT, history_has="tool_calls")

    t = c.tag()  # a content part that is not an object
    lines.append(json.dumps({"tag": t, "messages": [{"role": "user", "content": ["plain string part"]},
                                                   {"role": "assistant", "content": EN}]}))  # fmt: skip
    c.expect(name, t, "malformed_content_part_messages")

    t = c.tag()  # a user turn of an image only: there is no instruction text
    image = [{"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}]
    lines.append(json.dumps({"tag": t, "messages": [{"role": "user", "content": image},
                                                   {"role": "assistant", "content": EN}]}))  # fmt: skip
    c.expect(name, t, "no_user_turn")

    t = c.tag()  # converted data: each turn also under ShareGPT's names, the same role and text
    question = f"{t} Name a river. {EN}"
    lines.append(json.dumps({"messages": [
        {"role": "user", "content": question, "from": "human", "value": question},
        {"role": "assistant", "content": EN, "from": "gpt", "value": EN},
    ]}))  # fmt: skip
    c.expect(name, t, KEPT, instruction=question)

    t = c.tag()  # the two names disagree: which role was meant cannot be told
    lines.append(json.dumps({"tag": t, "messages": [{"role": "user", "content": EN, "from": "gpt"},
                                                   {"role": "assistant", "content": EN}]}))  # fmt: skip
    c.expect(name, t, "conflicting_turn_keys_messages")
    _jsonl(c.root / name, lines)


def _file_cases(c: Corpus) -> None:
    t = c.tag()  # an upper-case extension is still JSON Lines
    _jsonl(c.root / "UPPER.JSONL", [json.dumps(_alpaca(t))])
    c.expect("UPPER.JSONL", t, KEPT)
    sub = c.root / "sub"
    sub.mkdir()
    t = c.tag()  # files in sub-folders are read
    _jsonl(sub / "nested.ndjson", [json.dumps(_alpaca(t))])
    c.expect("sub/nested.ndjson", t, KEPT)
    # not data: hidden and underscore files (Spark's convention), other types; reported, not read
    for skipped in (".hidden.jsonl", "_meta.jsonl", "notes.txt", "_tmp/inside.jsonl"):
        (c.root / skipped).parent.mkdir(parents=True, exist_ok=True)
        _jsonl(c.root / skipped, [json.dumps(_alpaca("hxskip"))])
        c.skipped.add(skipped)
    (c.root / "empty.jsonl").write_bytes(b"")  # no record, no row
