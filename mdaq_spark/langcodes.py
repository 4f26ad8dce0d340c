"""Which strings may name a language: ISO 639 codes and English language names.

A language value ends up as a partition directory and a grouping key, so only a short,
lower-case code may pass; anything else (a dash, a 300-character note, a broken surrogate,
the "24" of "24_mixed.jsonl") is no language at all.
"""

from __future__ import annotations

import re

UNKNOWN = "und"

# English names (as in MIDB file names) and a few common spellings -> ISO 639-1
LANGUAGE_NAMES = {
    "arabic": "ar", "bengali": "bn", "chinese": "zh", "czech": "cs", "danish": "da", "dutch": "nl",
    "english": "en", "finnish": "fi", "french": "fr", "german": "de", "greek": "el", "hebrew": "he",
    "hindi": "hi", "hungarian": "hu", "indonesian": "id", "italian": "it", "japanese": "ja",
    "korean": "ko", "malay": "ms", "norwegian": "no", "persian": "fa", "polish": "pl",
    "portuguese": "pt", "romanian": "ro", "russian": "ru", "spanish": "es", "swahili": "sw",
    "swedish": "sv", "thai": "th", "turkish": "tr", "ukrainian": "uk", "urdu": "ur",
    "vietnamese": "vi",
}  # fmt: skip

ISO_639_1 = frozenset(
    """aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz
    ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io
    is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr
    ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si
    sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo
    xh yi yo za zh zu""".split()
)

# a record's own field may also carry a three-letter ISO 639-2/3 code ("fil", "yue", "zxx")
_THREE_LETTERS = re.compile("[a-z]{3}")


def _key(name: object) -> str:
    if not isinstance(name, str):
        return ""
    key = name.strip().lower()
    if key in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[key]
    return re.split("[-_]", key, maxsplit=1)[0]


def language_code(name: object) -> str:
    """'German', 'de', 'DE', 'de-AT', 'pt_BR', 'fil' -> a code; anything else -> 'und'."""
    key = _key(name)
    if key in ISO_639_1 or key == UNKNOWN or (_THREE_LETTERS.fullmatch(key) and key.isascii()):
        return key
    return UNKNOWN


# a file name names a language only as a whole: "de", "pt-BR", "zh_Hans", never "my_data" or "no_labels"
_FILE_CODE = re.compile("([a-z]{2})(?:[-_](?:[a-z]{2}|[0-9]{3}|hans|hant|latn|cyrl|arab))?")


def file_language(stem: str) -> str | None:
    """The language a file name gives ('German', 'de', 'pt-BR'), or None: '24_mixed' names no language.

    Stricter than a record's field: a file name is a language only when it is nothing else.
    """
    key = stem.strip().lower()
    if key in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[key]
    match = _FILE_CODE.fullmatch(key)
    return match.group(1) if match and match.group(1) in ISO_639_1 else None
