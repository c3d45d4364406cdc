"""C4 cleaning of raw web text, rule for rule as the TFDS C4 builder (config `c4/en`) does it.

Source of truth: tensorflow_datasets/text/c4.py and c4_utils.py. Rules, in TFDS order; each is its own
small function below and has a config field of the same name (False/None/0 switches it off):

1. `max_page_chars` (rule too_long_page): pages over 190,000 characters are dropped (is_valid_length).
2. `url_dedupe` (duplicate_url): among pages with the same normalised URL (TFDS normalize_url) only the
   newest by `timestamp` stays; ties go to the earliest page in input order. Pages without a URL never merge.
3. `clean` (clean_page). Every line is stripped, then: too_long_word (a word over 1000 characters drops
   the line); citation (`[1]`, `[]`, `[edit]`, `[citation needed]` are deleted); no_endmark (the line
   must end in . ? ! or a double quote, and not in ...); too_short (fewer than 5 whitespace words);
   lorem_ipsum (drops the page); javascript (drops the line); curly_bracket (a '{' drops the page);
   policy (terms of use / privacy policy / cookie lines dropped). Then too_few_sentences drops pages
   whose kept lines hold fewer than 3 sentences (summed line by line, as TFDS does).
4. `dedupe="lines"` (remove_duplicate_text): a line (md5 of its stripped, lower-cased text) survives only
   in the page with the smallest (md5(url) hex, input position), the page TFDS's
   `Top.PerKey(1, key=md5(url), reverse=True)` picks, with input position breaking ties among pages that
   share or lack a URL; repeats inside that page go too. Pages left empty or with fewer than 3 sentences
   (counted over the whole new text) are dropped. `dedupe="spans"` is the paper's wording instead: every
   window of 3 consecutive sentences is hashed (lower-cased, whitespace collapsed) and kept once; the
   sentences of every other occurrence are removed and each line's kept sentences are re-joined by spaces.
5. `lang_filter`: langdetect (seed 0, as TFDS) must say `lang` ("en") with probability >= 0.99.
6. `badwords_path`: pages whose lower-cased text contains a listed word flanked by non-word characters
   (TFDS regex `(?:\\W|^)(w1|w2|...)(?:\\W|$)`) are dropped. The list is an input file (one word a line,
   e.g. the LDNOOBW `en` list TFDS downloads); without it this rule is off. Blank lines are ignored.

Offline differences from TFDS. Sentences: TFDS uses NLTK's trained English Punkt model, which cannot be
downloaded here, so the default `sentence_splitter="punkt_untrained"` is nltk's PunktSentenceTokenizer with
empty parameters: it knows no abbreviations, collocations or orthographic statistics, so it also splits
after "Mr.", "e.g." or "U.S." when a word follows. It usually counts more sentences, so pages near the
3-sentence threshold can survive where TFDS drops them (rarely the reverse); the line rules never use
sentences, so which lines are kept is unaffected.
`sentence_splitter="punkt_english"` uses the trained model when `nltk.download("punkt_tab")` has been run.
Language: `langdetect` is the very package and call TFDS uses for c4/en; it ships its profiles and works
offline, so it is the closest match (langid/py3langid/lingua give different probabilities).

Scale. Input is streamed page by page. When a cross-page rule is on, pages are spilled after the per-page
rules to a temporary JSONL file, so memory holds only hash indexes: one entry per distinct normalised URL
and one per distinct line (or span) hash, never page text. With `num_workers=N` the hash space is split
into N shards (first 8 digest bytes mod N); process k indexes shard k only and writes, for each page, the
positions it must drop; the parent merges those lists in page order. A hash lives in exactly one shard, so
the result is identical to one process; across machines the same split applies to the spill files.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import heapq
import itertools
import json
import multiprocessing
import os
import re
import tempfile
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

END_MARKS = (".", "?", "!", '"')
ELLIPSIS = "..."
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                     "use of cookies", "use cookies")
CITATION_RE = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
SENTENCE_SPLITTERS = ("punkt_untrained", "punkt_english")
_BATCH = 64


@dataclasses.dataclass(frozen=True)
class C4Config:
    """Which C4 rules run, with TFDS's thresholds as defaults (c4/en; see `noclean` for en.noclean)."""

    max_page_chars: int | None = 190_000
    url_dedupe: bool = True
    clean: bool = True
    max_word_length: int | None = 1000
    citations: bool = True
    end_marks: bool = True
    min_words_per_line: int | None = 5
    lorem_ipsum: bool = True
    javascript: bool = True
    curly_bracket: bool = True
    policy: bool = True
    min_sentences: int | None = 3
    dedupe: str | None = "lines"
    span_sentences: int = 3
    lang_filter: bool = True
    lang: str = "en"
    min_lang_prob: float = 0.99
    badwords_path: str | None = None
    sentence_splitter: str = "punkt_untrained"
    text_key: str = "text"
    url_key: str = "url"
    timestamp_key: str = "timestamp"
    num_workers: int = 1
    tmp_dir: str | None = None

    def __post_init__(self):
        if self.dedupe not in (None, "lines", "spans"):
            raise ValueError(f"C4Config.dedupe={self.dedupe!r}: expected None, 'lines' or 'spans'")
        if self.sentence_splitter not in SENTENCE_SPLITTERS:
            raise ValueError(f"C4Config.sentence_splitter={self.sentence_splitter!r}: expected one of "
                             f"{SENTENCE_SPLITTERS}")
        if not 0.0 <= self.min_lang_prob <= 1.0:
            raise ValueError(f"C4Config.min_lang_prob={self.min_lang_prob}: expected a probability in [0, 1]")
        if self.num_workers < 1 or self.span_sentences < 1:
            raise ValueError(f"C4Config: num_workers={self.num_workers} and span_sentences="
                             f"{self.span_sentences} must be >= 1")
        if self.badwords_path is not None and not os.path.isfile(self.badwords_path):
            raise FileNotFoundError(f"C4Config.badwords_path={self.badwords_path!r}: no such file "
                                    "(expected a word list, one word per line)")

    @classmethod
    def noclean(cls, **overrides) -> "C4Config":
        """TFDS `c4/en.noclean`: only the length, URL and language filters."""
        return cls(**{"clean": False, "dedupe": None, **overrides})

    @property
    def cross_page(self) -> bool:
        return self.url_dedupe or self.dedupe is not None


@dataclasses.dataclass
class C4Stats:
    """Pages and lines each rule removed, plus totals and wall time."""

    pages_in: int = 0
    pages_out: int = 0
    lines_in: int = 0
    lines_out: int = 0
    seconds: float = 0.0
    pages_removed: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lines_removed: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lines_edited: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def merge(self, other: "C4Stats | Mapping[str, Any]") -> None:
        other = other if isinstance(other, C4Stats) else C4Stats.from_dict(other)
        for f in ("pages_in", "pages_out", "lines_in", "lines_out", "seconds"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        for f in ("pages_removed", "lines_removed", "lines_edited"):
            getattr(self, f).update(getattr(other, f))

    def to_dict(self) -> dict:
        items = ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        return {k: (dict(v) if isinstance(v, collections.Counter) else v) for k, v in items if v}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "C4Stats":
        counters = ("pages_removed", "lines_removed", "lines_edited")
        return cls(**{k: (collections.Counter(v) if k in counters else v) for k, v in d.items()})

    @property
    def pages_per_second(self) -> float:
        return self.pages_in / self.seconds if self.seconds else float("nan")


# ---------------------------------------------------------------- the rules, one small function each
def too_long_word(line: str, cfg: C4Config) -> bool:
    return any(len(word) > cfg.max_word_length for word in line.split())


def remove_citations(line: str, cfg: C4Config) -> str:
    return CITATION_RE.sub("", line)


def no_endmark(line: str, cfg: C4Config) -> bool:
    return not line.endswith(END_MARKS) or line.endswith(ELLIPSIS)


def too_short(line: str, cfg: C4Config) -> bool:
    return len(line.split()) < cfg.min_words_per_line


def has_lorem_ipsum(line: str, cfg: C4Config) -> bool:
    return "lorem ipsum" in line.lower()


def mentions_javascript(line: str, cfg: C4Config) -> bool:
    return "javascript" in line.lower()


def has_curly_bracket(line: str, cfg: C4Config) -> bool:
    return "{" in line


def is_policy_line(line: str, cfg: C4Config) -> bool:
    lower = line.lower()
    return any(p in lower for p in POLICY_SUBSTRINGS)


# (config field, rule name, action, function) in clean_page's order. A hit of a "line" rule drops the
# line, of a "page" rule the page; an "edit" rule rewrites the line.
LINE_RULES: tuple[tuple[str, str, str, Callable], ...] = (
    ("max_word_length", "too_long_word", "line", too_long_word),
    ("citations", "citation", "edit", remove_citations),
    ("end_marks", "no_endmark", "line", no_endmark),
    ("min_words_per_line", "too_short", "line", too_short),
    ("lorem_ipsum", "lorem_ipsum", "page", has_lorem_ipsum),
    ("javascript", "javascript", "line", mentions_javascript),
    ("curly_bracket", "curly_bracket", "page", has_curly_bracket),
    ("policy", "policy", "line", is_policy_line),
)
# Every counter name, in the order the rules run (the command's report follows it).
RULE_ORDER = ("too_long_page", "duplicate_url", "too_long_word", "no_endmark", "too_short", "lorem_ipsum",
              "javascript", "curly_bracket", "policy", "too_few_sentences", "empty", "global_duplicate",
              "local_duplicate", "span_duplicate_sentences", "dedupe_empty", "dedupe_too_few_sentences",
              "lang_exception", "lang_no_prediction", "lang_low_confidence", "lang_other", "badwords")


def normalize_url(url: str) -> str:
    """TFDS normalize_url: drop scheme and www., tracking queries, trailing slashes."""
    url = re.sub(r"https?:\/\/(www\.)?", "", url)
    url = re.sub(r"\?(utm_|ref|feed).*", "", url)
    return url.rstrip("/")


@functools.lru_cache(maxsize=2)
def _sentence_tokenizer(name: str):
    from nltk.tokenize import punkt
    if name == "punkt_untrained":
        return punkt.PunktSentenceTokenizer()
    try:
        return punkt.PunktTokenizer("english")
    except LookupError as e:
        raise LookupError("sentence_splitter='punkt_english' needs NLTK's punkt_tab data: run "
                          "python -c \"import nltk; nltk.download('punkt_tab')\"") from e


def sentences(text: str, cfg: C4Config) -> list[str]:
    """Punkt sentences of `text` (see the module docstring for the offline splitter)."""
    return _sentence_tokenizer(cfg.sentence_splitter).tokenize(text)


def clean_lines(text: str, cfg: C4Config, stats: C4Stats) -> str | None:
    """TFDS clean_page: the line rules in order, then the sentence minimum. None drops the page."""
    kept, num_sentences = [], 0
    for line in text.splitlines():
        line = line.strip()
        for field, rule, action, fn in LINE_RULES:
            if not getattr(cfg, field):
                continue
            if action == "edit":
                line, before = fn(line, cfg), line
                stats.lines_edited[rule] += line != before
            elif fn(line, cfg):
                if action == "page":
                    stats.pages_removed[rule] += 1
                    return None
                stats.lines_removed[rule] += 1
                break
        else:
            if cfg.min_sentences:
                num_sentences += len(sentences(line, cfg))
            kept.append(line)
    if cfg.min_sentences and num_sentences < cfg.min_sentences:
        stats.pages_removed["too_few_sentences"] += 1
        return None
    if not kept:  # reachable only with min_sentences off; TFDS would keep an empty page
        stats.pages_removed["empty"] += 1
        return None
    return "\n".join(kept).strip()


def language_verdict(text: str, cfg: C4Config) -> str | None:
    """TFDS detect_english: None when langdetect says `cfg.lang` with prob >= min_lang_prob, else why not."""
    import langdetect
    langdetect.DetectorFactory.seed = 0
    try:
        predictions = langdetect.detect_langs(text)
    except langdetect.lang_detect_exception.LangDetectException:
        return "lang_exception"
    if not predictions:
        return "lang_no_prediction"
    if predictions[0].prob < cfg.min_lang_prob:
        return "lang_low_confidence"
    return None if predictions[0].lang == cfg.lang else "lang_other"


@functools.lru_cache(maxsize=4)
def badwords_regex(path: str) -> re.Pattern:
    """TFDS's English bad-words regex over the words in `path` (one per line)."""
    with open(path, encoding="utf-8") as f:
        words = sorted({line.strip() for line in f} - {""})
    if not words:
        raise ValueError(f"{path}: bad-words file has no words (expected one word per line)")
    return re.compile(r"(?:\W|^)({})(?:\W|$)".format("|".join(re.escape(w) for w in words)))


def has_badword(text: str, cfg: C4Config) -> bool:
    return badwords_regex(cfg.badwords_path).search(text.lower()) is not None


def _late_filters(text: str, cfg: C4Config, stats: C4Stats) -> bool:
    """Language then bad words, on the text after deduplication."""
    if cfg.lang_filter:
        reason = language_verdict(text, cfg)
        if reason:
            stats.pages_removed[reason] += 1
            return False
    if cfg.badwords_path and has_badword(text, cfg):
        stats.pages_removed["badwords"] += 1
        return False
    return True


def _admit(text: str, cfg: C4Config, stats: C4Stats) -> bool:
    """Counts the page in; False when too_long_page drops it."""
    stats.pages_in += 1
    stats.lines_in += len(text.splitlines())
    if cfg.max_page_chars and len(text) > cfg.max_page_chars:
        stats.pages_removed["too_long_page"] += 1
        return False
    return True


def _early_filters(text: str, cfg: C4Config, stats: C4Stats) -> str | None:
    return clean_lines(text, cfg, stats) if cfg.clean else text


def _clean_one(text: str, cfg: C4Config, stats: C4Stats) -> str | None:
    out = _early_filters(text, cfg, stats) if _admit(text, cfg, stats) else None
    return out if out is not None and _late_filters(out, cfg, stats) else None


def clean_text(text: str, config: C4Config = C4Config(), stats: C4Stats | None = None) -> str | None:
    """All per-page rules on one page's text (no cross-page deduplication); None when it is dropped."""
    stats = C4Stats() if stats is None else stats
    out = _clean_one(text, config, stats)
    if out is None:
        return None
    stats.pages_out += 1
    stats.lines_out += len(out.split("\n"))
    return out


# ---------------------------------------------------------------- deduplication units
def _md5(text: str) -> bytes:
    return hashlib.md5(text.encode("utf-8")).digest()


def _sentence_table(text: str, cfg: C4Config) -> list[tuple[int, str]]:
    """(line number, sentence) for every sentence of every line."""
    return [(n, s) for n, line in enumerate(text.split("\n")) for s in sentences(line, cfg)]


def unit_hashes(text: str, cfg: C4Config) -> list[bytes]:
    """Dedup keys: one per line ('lines') or per window of span_sentences sentences ('spans')."""
    if cfg.dedupe == "lines":
        return [_md5(line.strip().lower()) for line in text.split("\n")]
    norm = [" ".join(s.lower().split()) for _, s in _sentence_table(text, cfg)]
    k = cfg.span_sentences
    return [_md5("\n".join(norm[i:i + k])) for i in range(len(norm) - k + 1)]


def drop_units(text: str, drops: set[int], cfg: C4Config, stats: C4Stats) -> str:
    """Text without the dropped lines, or without the sentences of the dropped windows."""
    if not drops:
        return text
    if cfg.dedupe == "lines":
        return "\n".join(line for n, line in enumerate(text.split("\n")) if n not in drops)
    covered = {j for w in drops for j in range(w, w + cfg.span_sentences)}
    stats.lines_removed["span_duplicate_sentences"] += len(covered)
    kept = collections.defaultdict(list)
    for j, (n, sentence) in enumerate(_sentence_table(text, cfg)):
        if j not in covered:
            kept[n].append(sentence)
    return "\n".join(" ".join(kept[n]) for n in sorted(kept))


def _shard_of(digest: bytes, num_shards: int) -> int:
    return int.from_bytes(digest[:8], "big") % num_shards


def _page_key(page: Mapping, idx: int, cfg: C4Config) -> tuple[str, int]:
    return hashlib.md5(str(page.get(cfg.url_key) or "").encode("utf-8")).hexdigest(), idx


def _read_json_lines(path: str) -> Iterator:
    with open(path, encoding="utf-8") as f:
        yield from map(json.loads, f)


def _read_spill(path: str, skip: frozenset[int]) -> Iterator[list]:
    """Spill records [idx, page, stats dict] of kept pages not in `skip`."""
    return (rec for rec in _read_json_lines(path) if rec[1] is not None and rec[0] not in skip)


def dedupe_shard(spill: str, losers: frozenset[int], shard: int, num_shards: int, cfg: C4Config,
                 out: str) -> None:
    """Index hashes of one shard, then write [idx, global drops, local drops] for pages that lose some."""
    winner: dict[bytes, tuple[str, int]] = {}
    for idx, page, _ in _read_spill(spill, losers):
        key = _page_key(page, idx, cfg)
        for h in unit_hashes(page[cfg.text_key], cfg):
            if _shard_of(h, num_shards) == shard and (h not in winner or key < winner[h]):
                winner[h] = key
    with open(out, "w", encoding="utf-8") as f:
        for idx, page, _ in _read_spill(spill, losers):
            key, seen, lost, local = _page_key(page, idx, cfg), set(), [], []
            for pos, h in enumerate(unit_hashes(page[cfg.text_key], cfg)):
                if _shard_of(h, num_shards) != shard:
                    continue
                if winner[h] != key:
                    lost.append(pos)
                elif h in seen:
                    local.append(pos)
                seen.add(h)
            if lost or local:
                f.write(json.dumps([idx, lost, local]) + "\n")


def merged_drops(paths: list[str]) -> Iterator[tuple[int, set[int], set[int]]]:
    """(page idx, global drops, local drops), in page order, merged over the shards' drop files."""
    merged = heapq.merge(*map(_read_json_lines, paths), key=lambda rec: rec[0])
    for idx, recs in itertools.groupby(merged, key=lambda rec: rec[0]):
        recs = list(recs)
        yield idx, {p for r in recs for p in r[1]}, {p for r in recs for p in r[2]}


# ---------------------------------------------------------------- the streaming pipeline
def _map_batches(fn, items: Iterable, pool, workers: int) -> Iterator:
    """fn over batches of items, in order; with a pool, a bounded window of batches at a time."""
    it = iter(items)
    batches = iter(lambda: list(itertools.islice(it, _BATCH)), [])
    if pool is None:
        yield from map(fn, batches)
        return
    while window := list(itertools.islice(batches, 4 * workers)):
        yield from pool.map(fn, window)


def _checked(pages: Iterable[Mapping], cfg: C4Config) -> Iterator[tuple[int, Mapping]]:
    for idx, page in enumerate(pages):
        if not isinstance(page, Mapping) or not isinstance(page.get(cfg.text_key), str):
            got = type(page.get(cfg.text_key)).__name__ if isinstance(page, Mapping) else type(page).__name__
            raise ValueError(f"page {idx}: expected a dict with a string {cfg.text_key!r} field, got {got}")
        yield idx, page


def _per_page_batch(cfg: C4Config, batch: list) -> tuple[list, dict]:
    stats, out = C4Stats(), []
    for _, page in batch:
        text = _clean_one(page[cfg.text_key], cfg, stats)
        out.append(None if text is None else {**page, cfg.text_key: text})
    return out, stats.to_dict()


def _spill_batch(cfg: C4Config, batch: list) -> tuple[list, None]:
    """Spill records [idx, cleaned page or None, that page's rule counts]."""
    records = []
    for idx, page in batch:
        stats = C4Stats()
        text = _early_filters(page[cfg.text_key], cfg, stats)
        records.append([idx, None if text is None else {**page, cfg.text_key: text}, stats.to_dict()])
    return records, None


def _index_url(index: dict, losers: set, page: Mapping, idx: int, cfg: C4Config) -> None:
    """TFDS select_newest_page per normalised URL; the earliest page wins ties."""
    url = page.get(cfg.url_key)
    if not cfg.url_dedupe or not url:
        return
    key, stamp = _md5(normalize_url(str(url))), str(page.get(cfg.timestamp_key) or "")
    best = index.get(key)
    if best is None or stamp > best[0]:
        index[key] = (stamp, idx)
        if best is not None:
            losers.add(best[1])
    else:
        losers.add(idx)


def _spill(pages, cfg: C4Config, stats: C4Stats, pool, path: str) -> frozenset[int]:
    """Pass 1: length filter, URL index, clean_page; returns the pages that lose URL deduplication."""
    url_index, losers = {}, set()

    def admitted():
        for idx, page in _checked(pages, cfg):
            if _admit(page[cfg.text_key], cfg, stats):
                _index_url(url_index, losers, page, idx, cfg)
                yield idx, page

    with open(path, "w", encoding="utf-8") as f:
        for records, _ in _map_batches(functools.partial(_spill_batch, cfg), admitted(), pool,
                                       cfg.num_workers):
            f.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)
    return frozenset(losers)


def _dedupe_page(text: str, lost: set[int], local: set[int], cfg: C4Config, stats: C4Stats) -> str | None:
    """TFDS _remove_lines_from_text for one page, given the positions it loses."""
    if cfg.dedupe == "lines":
        stats.lines_removed["global_duplicate"] += len(lost)
        stats.lines_removed["local_duplicate"] += len(local)
    text = drop_units(text, lost | local, cfg, stats)
    if not text:
        stats.pages_removed["dedupe_empty"] += 1
        return None
    minimum = cfg.min_sentences if cfg.clean else 0
    if minimum and len(sentences(text, cfg)) < minimum:
        stats.pages_removed["dedupe_too_few_sentences"] += 1
        return None
    return text


def _finish_batch(cfg: C4Config, batch: list) -> tuple[list, dict]:
    stats, out = C4Stats(), []
    for _, page, lost, local in batch:
        text = page[cfg.text_key]
        if cfg.dedupe:
            text = _dedupe_page(text, lost, local, cfg, stats)
        out.append(None if text is None or not _late_filters(text, cfg, stats)
                   else {**page, cfg.text_key: text})
    return out, stats.to_dict()


def _finish(spill: str, losers: frozenset[int], drop_files: list[str], cfg: C4Config, stats: C4Stats,
            pool) -> Iterator[dict]:
    """Pass 3: URL losers out, duplicate lines out, then language and bad words, in input order."""
    def survivors():
        drops = merged_drops(drop_files)
        pending = next(drops, None)
        for idx, page, delta in _read_json_lines(spill):
            if idx in losers:
                stats.pages_removed["duplicate_url"] += 1
                continue
            stats.merge(delta)
            if page is None:
                continue
            lost = local = set()
            if pending is not None and pending[0] == idx:
                _, lost, local = pending
                pending = next(drops, None)
            yield idx, page, lost, local

    for pages, delta in _map_batches(functools.partial(_finish_batch, cfg), survivors(), pool,
                                     cfg.num_workers):
        stats.merge(delta)
        yield from (p for p in pages if p is not None)


def _cross_page(pages, cfg: C4Config, stats: C4Stats, pool) -> Iterator[dict]:
    with tempfile.TemporaryDirectory(prefix="t2t-c4-", dir=cfg.tmp_dir) as tmp:
        spill = os.path.join(tmp, "pages.jsonl")
        losers = _spill(pages, cfg, stats, pool, spill)
        drop_files = []
        if cfg.dedupe:
            n = cfg.num_workers
            drop_files = [os.path.join(tmp, f"drops-{k}.jsonl") for k in range(n)]
            jobs = [(spill, losers, k, n, cfg, drop_files[k]) for k in range(n)]
            list(pool.starmap(dedupe_shard, jobs) if pool else itertools.starmap(dedupe_shard, jobs))
        yield from _finish(spill, losers, drop_files, cfg, stats, pool)


def _per_page(pages, cfg: C4Config, stats: C4Stats, pool) -> Iterator[dict]:
    fn = functools.partial(_per_page_batch, cfg)
    for kept, delta in _map_batches(fn, _checked(pages, cfg), pool, cfg.num_workers):
        stats.merge(delta)
        yield from (p for p in kept if p is not None)


def clean_pages(pages: Iterable[Mapping], config: C4Config = C4Config(),
                stats: C4Stats | None = None) -> Iterator[dict]:
    """Kept pages in input order: `text` cleaned, every other field unchanged; counts go to `stats`."""
    stats = C4Stats() if stats is None else stats
    start = time.perf_counter()
    pool = multiprocessing.get_context("spawn").Pool(config.num_workers) if config.num_workers > 1 else None
    try:
        run = _cross_page if config.cross_page else _per_page
        for page in run(pages, config, stats, pool):
            stats.pages_out += 1
            stats.lines_out += len(page[config.text_key].split("\n"))
            yield page
    finally:
        if pool is not None:
            pool.terminate()
        stats.seconds += time.perf_counter() - start


def preprocessor(config: C4Config = C4Config()) -> Callable:
    """Registry preprocessor `pp(ds, ctx) -> ds` over raw pages (dicts with a text field).

    Per-page rules only: a lazy map + filter. With URL or line deduplication on, `ds` is read once through
    `clean_pages` and the kept pages become an in-memory MapDataset; for corpora larger than memory run
    `python -m t2t.clean_c4` once and read its output with a JsonlSource instead.
    """
    import grain

    def pp(ds, ctx):
        if config.cross_page:
            return grain.MapDataset.source(list(clean_pages(iter(ds), config)))
        key = config.text_key
        cleaned = ds.map(lambda ex: {**ex, key: clean_text(ex[key], config)})
        return cleaned.filter(lambda ex: ex[key] is not None)
    return pp
