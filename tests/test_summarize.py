"""Sentence splitting and extractive summaries."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pysbd
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from digest.cli import cli
from digest.models import Article
from digest.summarize import (
    Summary,
    content_words,
    detect_language,
    good_feed_summary,
    opens_mid_thought,
    split_sentences,
    split_words,
    summarize,
)
from tests.conftest import SEED, corpus

BBC = "bbc-news-summary"  # ../shared/corpus: 40 BBC articles with reference summaries

CAPTION = (
    "On July 16, 2018, then-President Donald Trump (left) held a joint press conference with "
    "Russian President Vladimir Putin in Helsinki, Finland. / AFP Yonhap News"
)


def seed_parts() -> tuple[str, str]:
    """The seed page's title and its body paragraphs (after the caption, before the furniture)."""
    lines = SEED.read_text(encoding="utf-8").splitlines()
    title = lines[2].strip()
    text = "\n".join(lines)
    body = text.split(CAPTION + "\n\n", 1)[1].split("Hot this week", 1)[0]
    return title, body.strip()


def seed_article(**changes: object) -> Article:
    title, body = seed_parts()
    article = Article(title=title, text=body, origin=str(SEED))
    for name, value in changes.items():
        setattr(article, name, value)
    return article


def corpus_articles() -> list[Article]:
    """The BBC corpus articles, each line a paragraph, as the bench reads them."""
    articles = []
    for path in sorted((corpus(BBC) / "article").glob("*/*.txt")):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        lines = [line for line in lines if line]
        articles.append(Article(title=lines[0], text="\n\n".join(lines[1:]), origin=str(path)))
    return articles


def pysbd_sentences(text: str) -> list[str]:
    """Plain pysbd, one line at a time: what split_sentences must agree with."""
    segmenter = pysbd.Segmenter(language="en", clean=False)
    out: list[str] = []
    for line in text.splitlines():
        own: list[str] = []
        for piece in segmenter.segment(line.strip()) if line.strip() else []:
            piece = piece.strip()
            if own and not any(ch.isalnum() for ch in piece):
                own[-1] += piece
            elif piece:
                own.append(piece)
        out.extend(own)
    return out


# ---- split_sentences --------------------------------------------------------------------


def test_split_keeps_abbreviations_and_quotes_whole() -> None:
    text = (
        'Mr. Smith went to Washington D.C. on Monday. He said "we will win. We always do." '
        "Then he left at 5 p.m. for the U.S. Capitol."
    )
    assert split_sentences(text) == [
        "Mr. Smith went to Washington D.C. on Monday.",
        'He said "we will win. We always do."',
        "Then he left at 5 p.m. for the U.S. Capitol.",
    ]


def test_split_never_joins_paragraphs() -> None:
    text = "Hot this week\n\nGold tops $3,100 for the first time\nOil falls. Stocks fall too."
    assert split_sentences(text) == [
        "Hot this week",
        "Gold tops $3,100 for the first time",
        "Oil falls.",
        "Stocks fall too.",
    ]


def test_split_agrees_with_pysbd_on_seed_and_corpus() -> None:
    texts = [SEED.read_text(encoding="utf-8")]
    for article in corpus_articles():
        lines = article.text.split("\n\n")
        texts.append(article.text)
        # The same sentences run together into paragraphs, as most pages have them.
        texts.append("\n\n".join(" ".join(lines[i : i + 3]) for i in range(0, len(lines), 3)))
    assert len(texts) > 40
    for text in texts:
        assert split_sentences(text) == pysbd_sentences(text)


# ---- summarize: shape -------------------------------------------------------------------


def all_test_articles() -> list[Article]:
    return [seed_article(), *corpus_articles()]


@pytest.mark.parametrize("budget", [60, 150, 240, 320, 600])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_summary_within_budget_unless_single_sentence(budget: int, count: int) -> None:
    for article in all_test_articles():
        summary = summarize(article, sentences=count, budget=budget)
        assert 1 <= len(summary.sentences) <= count
        if len(summary.sentences) > 1:
            assert len(summary.text) <= budget, article.origin
        assert summary.text == " ".join(summary.sentences)


def test_summary_is_whole_sentences_in_article_order() -> None:
    for article in all_test_articles():
        sentences = split_sentences(article.text)
        summary = summarize(article, sentences=3, budget=600)
        positions = [sentences.index(s) for s in summary.sentences]  # whole, or ValueError
        assert positions == sorted(positions)


def test_too_small_budget_gives_one_whole_sentence() -> None:
    article = seed_article()
    summary = summarize(article, sentences=2, budget=40)
    assert len(summary.sentences) == 1
    assert len(summary.text) > 40
    assert summary.sentences[0] in split_sentences(article.text)


def test_seed_article_summary() -> None:
    article = seed_article()
    summary = summarize(article)
    assert isinstance(summary, Summary)
    assert 1 <= len(summary.sentences) <= 2
    assert len(summary.text) <= 320 or len(summary.sentences) == 1
    body_sentences = split_sentences(article.text)
    assert all(s in body_sentences for s in summary.sentences)
    assert "Putin" in summary.text and "Trump" in summary.text


def test_off_topic_sentence_is_not_chosen() -> None:
    text = "\n\n".join(
        [
            "The weather in the capital was unusually warm for the time of year, officials noted.",
            "The city council approved a new budget for public transport on Tuesday evening.",
            "The transport budget adds two tram lines and more night buses across the city.",
            "Council members said the public transport budget would cut traffic in the city.",
            "Critics of the council said the transport budget relied on higher parking fees.",
        ]
    )
    article = Article(title="Council approves transport budget", text=text, origin="test")
    summary = summarize(article, sentences=2, budget=1000)
    assert len(summary.sentences) == 2
    assert not any("weather" in s for s in summary.sentences)


def test_empty_article_gives_empty_summary() -> None:
    summary = summarize(Article(title="Nothing here", text="", origin="test"))
    assert summary.sentences == []
    assert summary.text == ""


# ---- summarize: what is never chosen ----------------------------------------------------


def test_caption_byline_dateline_and_fragments_never_chosen() -> None:
    title, body = seed_parts()
    page = "\n\n".join(
        [
            "Tuesday, April 1, 2025",
            title,
            CAPTION,
            CAPTION,
            "By Jane Doe and John Roe, Staff Reporters",
            "Updated: April 1, 2025 at 10:00 a.m.",
            "Article mis à jour le 7 janvier 2020.",
            "Zuletzt aktualisiert am 3. Dezember 2026.",
            "Trump and Putin spoke again. (Photo: Reuters)",
            "Yes, he did.",
            body,
            "Reporting by Jane Doe; editing by John Roe.",
        ]
    )
    article = Article(title=title, text=page, origin="test")
    # Asking for every sentence shows everything the summarizer considers fit.
    summary = summarize(article, sentences=50, budget=100_000)
    assert len(summary.sentences) >= 10
    for sentence in summary.sentences:
        assert "AFP Yonhap" not in sentence
        assert not sentence.startswith(
            ("By Jane", "Updated", "Reporting by", "Tuesday", "Article mis", "Zuletzt")
        )
        assert "(Photo" not in sentence
        assert len(sentence) >= 30
        assert sentence != title


def test_byline_rule_keeps_sentences_starting_with_by() -> None:
    text = (
        "By 2030, the company expects to double its output of electric buses and trucks.\n\n"
        "By Jane Doe"
    )
    article = Article(title="Bus maker plans", text=text, origin="test")
    assert summarize(article, sentences=5, budget=1000).sentences == [text.split("\n\n")[0]]


def test_dateline_is_dropped_from_first_sentence() -> None:
    text = (
        "WASHINGTON (Reuters) — The Senate passed the spending bill late on Friday, averting "
        "a government shutdown.\n\nThe bill now goes to the president for signature."
    )
    article = Article(title="Senate passes spending bill", text=text, origin="test")
    summary = summarize(article, sentences=2, budget=1000)
    assert summary.sentences[0].startswith("The Senate passed the spending bill")
    assert all("Reuters" not in s for s in summary.sentences)


# ---- the source's own summary -----------------------------------------------------------

GOOD = (
    "Donald Trump says he may meet Vladimir Putin soon after taking office, and the Kremlin "
    "says it is open to talks on normalizing relations."
)


def test_good_feed_summary_is_kept() -> None:
    article = seed_article(summary=GOOD)
    assert good_feed_summary(article)
    assert summarize(article).text == GOOD


def test_feed_summary_is_trimmed_to_whole_sentences_within_budget() -> None:
    article = seed_article(summary=GOOD + " " + GOOD.replace("Donald", "Former president"))
    summary = summarize(article, sentences=2, budget=200)
    assert summary.sentences == [GOOD]


@pytest.mark.parametrize(
    "feed_summary",
    [
        GOOD[:-1] + "…",
        GOOD[:-1] + "...",
        GOOD[:-1] + " […]",
        GOOD + " Continue reading",
        GOOD + " Read more.",
        GOOD + " The post Trump and Putin appeared first on World News Daily.",
        "Trump and Putin eye a new meeting.",  # too short to say anything the title does not
        "Trump and Putin Eye a New Meeting – Could This Be the Start of a New Era for "
        "U.S.-Russia Relations?",  # the title again
    ],
)
def test_poor_feed_summary_is_replaced_by_the_body(feed_summary: str) -> None:
    article = seed_article(summary=feed_summary)
    assert not good_feed_summary(article)
    summary = summarize(article)
    assert summary.sentences
    assert all(s in split_sentences(article.text) for s in summary.sentences)


def test_corpus_is_present() -> None:
    # The shape tests above lean on the corpus; fail loudly rather than test nothing.
    assert len(corpus_articles()) >= 20, f"no articles in {corpus(BBC)}"
    assert Path(SEED).is_file()


def test_teaser_without_body_falls_back_to_the_clipped_feed_summary() -> None:
    teaser = Article(
        title="Gold tops $3,100",
        text="Gold tops $3,100",
        origin="feed",
        summary="Gold prices have exceeded $3,100 per ounce for the first time, driven by …",
    )
    assert not good_feed_summary(teaser)
    assert summarize(teaser).text == teaser.summary


def test_repeated_paragraph_far_apart_is_not_a_caption() -> None:
    quote = "The council said the new tram lines would open to passengers in the spring of 2027."
    text = "\n\n".join([quote, "Work on the depot starts next month, the council said.", quote])
    article = Article(title="Tram lines", text=text, origin="test")
    assert quote in summarize(article, sentences=3, budget=1000).sentences


def test_two_sentences_saying_the_same_thing_are_not_both_chosen() -> None:
    lead = "The city council approved a new budget for public transport on Tuesday evening."
    text = "\n\n".join(
        [
            lead,
            "On Tuesday evening the city council approved a new public transport budget.",
            "The budget adds two tram lines and more night buses across the city.",
            "Critics said the transport plan relied on higher parking fees in the centre.",
        ]
    )
    article = Article(title="Council approves transport budget", text=text, origin="test")
    summary = summarize(article, sentences=2, budget=1000)
    assert len(summary.sentences) == 2
    assert sum("approved" in s for s in summary.sentences) == 1


# ---- the newsletter's language ---------------------------------------------------------------


GERMAN = (
    "Der Stadtrat hat am Dienstag den neuen Haushalt für den Nahverkehr beschlossen. "
    "Es gibt zwei neue Straßenbahnlinien und mehr Nachtbusse in der ganzen Stadt.\n\n"
    "Kritiker sagten, der Haushalt stütze sich auf höhere Parkgebühren in der Innenstadt."
)


@pytest.mark.parametrize("language", ["en-GB", "EN_us", "pt-BR", "xx"])
def test_regional_and_unknown_languages_summarize_like_english(language: str) -> None:
    article = seed_article()
    assert summarize(article, language=language) == summarize(article, language="en")


def test_a_language_pysbd_knows_is_split_with_its_rules() -> None:
    article = Article(title="Haushalt für den Nahverkehr", text=GERMAN, origin="de.txt")
    summary = summarize(article, sentences=2, budget=400, language="de-AT")
    assert len(summary.sentences) == 2
    assert all(s in GERMAN for s in summary.sentences)
    assert split_sentences(GERMAN, "de")[0] == (
        "Der Stadtrat hat am Dienstag den neuen Haushalt für den Nahverkehr beschlossen."
    )


def test_digest_summarize_reads_the_language_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    page = tmp_path / "seite.txt"
    page.write_text(
        "2026-03-03\n\nHaushalt für den Nahverkehr\n\n" + GERMAN + "\n", encoding="utf-8"
    )
    for language in ("de", "pt-BR"):
        monkeypatch.setenv("DIGEST_LANGUAGE", language)
        result = CliRunner().invoke(cli, ["summarize", str(page), "--json"])
        assert result.exit_code == 0, result.output
        sentences = json.loads(result.output)[0]["sentences"]
        assert sentences and all(s in GERMAN for s in sentences)


# ---- the budget and the quality bar (issue 4) ---------------------------------------------


def test_a_sentence_that_does_not_fit_is_dropped_not_replaced() -> None:
    text = "\n\n".join(
        [
            "The city council approved a new public transport budget on Tuesday evening, adding "
            "two tram lines, forty electric buses and night services across the city next spring.",
            "Council members said the transport budget, the largest in a decade, would cut "
            "traffic in the city centre and bring a tram stop within a short walk of most homes.",
            "Critics said the transport budget relied on higher parking fees in the city centre.",
            "The meeting ran late into the night.",
        ]
    )
    article = Article(title="Council approves transport budget", text=text, origin="test")
    best_two = summarize(article, sentences=2, budget=10_000)
    assert len(best_two.sentences) == 2 and len(best_two.text) > 320
    tight = summarize(article, sentences=2, budget=320)
    # One of the two best alone, rather than the best beside a sentence ranked further down.
    assert len(tight.sentences) == 1
    assert tight.sentences[0] in best_two.sentences


def test_digest_summarize_meets_the_quality_bar_on_the_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The measure: the share of chosen sentences found in the reference summary,
    # through the command with default settings (no digest.toml, budget 320).
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    bbc = corpus(BBC)
    for category in sorted(p for p in (bbc / "article").iterdir() if p.is_dir()):
        files = sorted(category.glob("*.txt"))
        result = CliRunner().invoke(
            cli, ["summarize", "--sentences", "2", "--json", *map(str, files)]
        )
        assert result.exit_code == 0, result.output
        records = json.loads(result.output)
        assert len(records) == len(files) >= 10
        hits = picked = 0
        for record in records:
            origin = Path(record["origin"])
            reference = " ".join(
                (bbc / "summary" / category.name / origin.name).read_text(encoding="utf-8").split()
            )
            assert 1 <= len(record["sentences"]) <= 2
            assert len(record["summary"]) <= 320 or len(record["sentences"]) == 1
            picked += len(record["sentences"])
            hits += sum(" ".join(s.split()) in reference for s in record["sentences"])
        # The bar was 0.90 per category, met by weights fitted to these 40 pairs
        # (title 0.1, lede 0.1, a length-weighted restart), now gone. The references leave the
        # lede out of 6 of the 20 business summaries, news ledes among them ("Ethiopia produced
        # … 24% higher", "Parmalat … reported a doubling in profit"), which a summary that
        # carries the news keeps: 0.85 is what a method fitted to nothing here reaches
        # (business 0.850, entertainment 0.895: bench/summaries.py).
        assert hits / picked >= 0.85, f"{category.name}: {hits}/{picked}"


def test_words_are_letters_and_digits_joined_by_inner_apostrophes() -> None:
    text = "Don't 'quote' me: rock’n’roll, a''b, snake_case, Straße & naïve 3.5% — OK?"
    assert split_words(text) == [
        "don't",
        "quote",
        "me",
        "rock’n’roll",
        "a",
        "b",
        "snake",
        "case",
        "strasse",
        "naïve",
        "3",
        "5",
        "ok",
    ]


# ASCII text takes a faster path than other text: both must find the words the pattern defines.
@given(st.text(alphabet=st.sampled_from("aZ09_ '’.-\n\té—“”ß")))
def test_plain_and_accented_text_split_into_the_same_words_as_the_pattern(text: str) -> None:
    pattern = r"[^\W_]+(?:['’][^\W_]+)*"
    assert split_words(text) == re.findall(pattern, text.casefold())


# ---- summaries that read as a beginning and carry the news (issue 8) ------------------------

EMISSIONS = "\n\n".join(
    [
        "Britain's carbon emissions fell 2% last year to their lowest level since 1890, "
        "official figures showed on Thursday.",
        "Coal use in power stations dropped by a quarter as wind and solar farms supplied more "
        "of the grid's electricity.",
        "That's been driving down emissions from electricity for a decade, as coal power "
        "stations closed and wind and solar power grew across the grid.",
        "Emissions from transport, now the largest source, barely changed, as more cars and vans "
        "on the roads offset cleaner engines and electric cars.",
        "It means emissions from power, transport and homes have fallen for a seventh year, "
        "although the pace of the fall has slowed.",
    ]
)


def test_a_summary_never_opens_on_a_word_pointing_back() -> None:
    article = Article(title="UK carbon emissions fall 2%", text=EMISSIONS, origin="test")
    for count in (1, 2, 3):
        summary = summarize(article, sentences=count, budget=1000)
        assert not opens_mid_thought(summary.sentences[0]), summary.sentences
        assert "fell 2%" in summary.sentences[0]  # the lede carries the news
    # "That's…" or "It…" may only follow the sentence they point back to.
    for sentence in summarize(article, sentences=5, budget=10_000).sentences[1:]:
        if opens_mid_thought(sentence):
            sentences = split_sentences(EMISSIONS)
            before = sentences[sentences.index(sentence) - 1]
            assert before in summarize(article, sentences=5, budget=10_000).sentences


def test_a_hook_that_is_not_the_news_does_not_lead() -> None:
    # The opener shares the headline's words but says less than the sentences around it, and
    # nothing of the headline that the rest does not say too: the central sentences lead.
    text = "\n\n".join(
        [
            "Council budget talks drew a small crowd on a rainy evening at the town hall.",
            "The council approved a budget that adds two tram lines and more night buses.",
            "The budget pays for the tram lines with higher parking fees in the centre.",
            "Parking fees in the centre rise by a fifth to pay for the new tram lines.",
            "Opposition members said the budget's parking fees would hurt shops in the centre.",
        ]
    )
    article = Article(title="Council approves budget", text=text, origin="test")
    summary = summarize(article, sentences=2, budget=1000)
    assert "rainy evening" not in summary.text
    assert not opens_mid_thought(summary.sentences[0])


@pytest.mark.parametrize(
    "opener",
    [
        "That's been driving down emissions",
        "It was the largest fall",
        "However, the pace slowed",
        "But the pace slowed",
        "This is the seventh year",
        "In addition, the pace slowed",
        "In particular, the pace slowed",
        "to her Instagram page to share",
        "“and then it stopped",
    ],
)
def test_openers_that_point_back_or_are_cut(opener: str) -> None:
    assert opens_mid_thought(opener + " in the spring.")


@pytest.mark.parametrize(
    "opener",
    [
        "Und er meldet",
        "Außerdem wurde es",
        "Dennoch streitet",
        "Das liegt aber",
        "Dies ist",
        "Insbesondere das Rotwild",
        "Zum Beispiel wenn ich sage",
    ],
)
def test_german_openers_that_point_back(opener: str) -> None:
    assert opens_mid_thought(opener + " nichts.", "de")


@pytest.mark.parametrize(
    ("sentence", "language"),
    [
        ("This week the council approved the budget.", "en"),
        ("The council approved the budget.", "en"),
        ("Itzehoe council approved the budget.", "en"),
        ("Das Rathaus bleibt am Montag geschlossen.", "de"),
        ("Es gibt zwei neue Straßenbahnlinien.", "de"),
        ("2022 stand das Thema Ehrenamt im Fokus.", "de"),
    ],
)
def test_openers_that_stand_on_their_own(sentence: str, language: str) -> None:
    assert not opens_mid_thought(sentence, language)


GEYER = "\n\n".join(
    [
        "Der Chefredakteur der Lokalzeitung hat am Montag seinen Rücktritt angekündigt, "
        "nachdem der Verlag die Redaktion um ein Drittel verkleinern will.",
        "Der Verlag will die Redaktion der Lokalzeitung bis zum Sommer um ein Drittel "
        "verkleinern und drei Lokalausgaben zusammenlegen.",
        "Und er meldet Ressortleiter Geyer nichts von den Plänen des Verlags für die "
        "Lokalzeitung und die Redaktion.",
        "Die Redaktion der Lokalzeitung erfuhr von den Plänen des Verlags aus einer Mitteilung "
        "an die Anzeigenkunden.",
    ]
)


def test_a_german_article_in_an_english_newsletter_is_read_as_german() -> None:
    article = Article(title="Chefredakteur tritt zurück", text=GEYER, origin="de.txt")
    assert detect_language(GEYER, "en") == "de"
    summary = summarize(article, sentences=2, budget=400, language="en")
    assert summary.sentences and not summary.sentences[0].startswith("Und er")
    assert summary.sentences[0].startswith("Der Chefredakteur")


def test_stop_words_and_stems_follow_the_language() -> None:
    assert content_words("The companies were running", "en") == ["compani", "run"]
    # German: "die", "und", "der" are stop words, and plurals and inflections share a stem.
    assert content_words("Die Häuser und der Häuser", "de") == ["haus", "haus"]
    assert content_words("Les maisons et la maison", "fr") == ["maison", "maison"]
    # A language without a stemmer keeps its words whole (stop words still go where known).
    assert content_words("Kwa hiyo nyumba", "sw") == ["nyumba"]


def test_detection_keeps_the_newsletter_language_for_short_or_unclear_text() -> None:
    assert detect_language("Der Rat tagt.", "en") == "en"  # too short to tell
    english = "The council said on Tuesday that the new budget would add two tram lines " * 3
    assert detect_language(english, "de") == "en"
    assert detect_language(english, "en-GB") == "en-GB"


def test_calls_to_action_are_never_chosen() -> None:
    text = "\n\n".join(
        [
            "Python 3.6.0 is the newest major release of the Python language, with formatted "
            "string literals and faster dictionaries.",
            "You can download Python 3.6.0 here.",
            "Click here to subscribe to our newsletter for more Python news.",
            "The release also adds asynchronous generators and comprehensions to the language.",
        ]
    )
    article = Article(title="Python 3.6.0 released", text=text, origin="test")
    summary = summarize(article, sentences=5, budget=10_000)
    assert summary.sentences == [text.split("\n\n")[0], text.split("\n\n")[3]]


def test_sentences_the_page_glued_together_are_split() -> None:
    text = (
        "Is the housing market heading for a recovery?Monday, 6 January 2020 It takes months "
        "for a housing market to turn, economists say, and the signs are mixed.\n\n"
        "Indigenous Peoples have managed landscapes sustainably for millennia.However, "
        "incursions into their territories have fractured them."
    )
    sentences = split_sentences(text)
    assert "Is the housing market heading for a recovery?" in sentences
    assert "Indigenous Peoples have managed landscapes sustainably for millennia." in sentences
    article = Article(title="Housing market recovery", text=text, origin="test")
    summary = summarize(article, sentences=3, budget=10_000)
    assert summary.sentences[0] == "Is the housing market heading for a recovery?"
    assert summary.sentences[1].startswith("It takes months")  # the date stamp is gone
    assert not any("?Monday" in s or "2020 It" in s or ".However" in s for s in summary.sentences)


def test_a_cut_sentence_never_opens_a_summary() -> None:
    text = "\n\n".join(
        [
            "to her Instagram page to share the news of the baby's birth with her eight million "
            "followers on Sunday.",
            "The singer's first album sold two million copies in its first year and won three "
            "awards at the ceremony in London.",
        ]
    )
    article = Article(title="Singer shares baby news", text=text, origin="test")
    summary = summarize(article, sentences=1, budget=1000)
    assert summary.sentences == [text.split("\n\n")[1]]


def test_a_body_that_cannot_open_a_summary_falls_back_to_the_feed_summary() -> None:
    text = "and then the council met again to approve the transport budget for next year.\n\n"
    text += "It was approved by 31 votes to 12 after a long debate in the chamber on Tuesday."
    article = Article(title="Budget", text=text, origin="test", summary="The council met.")
    assert summarize(article).sentences == ["The council met."]


@pytest.mark.parametrize(
    "sentence",
    ["Downloads of the app rose 40% last year.", "Subscribers to the service doubled in 2025."],
)
def test_news_that_merely_starts_like_a_call_to_action_is_kept(sentence: str) -> None:
    article = Article(title="App downloads and subscribers", text=sentence, origin="test")
    assert summarize(article).sentences == [sentence]


@pytest.mark.parametrize(
    "description",
    [
        "FISCH&FANG. Deutschlands erstes Anglermagazin.",  # a tagline
        "Das Lebensgefühl der Menschen während der Corona-Krise ist höchst ambivalent. Am 15.",
        "And the council approved it on Tuesday evening after a long and heated debate.",
        "You can read the full council report and the budget figures here.",
    ],
)
def test_a_description_that_is_not_a_real_opening_sentence_is_passed_over(
    description: str,
) -> None:
    article = seed_article(summary=description)
    assert not good_feed_summary(article)
    summary = summarize(article)
    assert summary.sentences and description not in summary.text


def test_the_page_description_is_preferred_when_it_is_a_real_sentence() -> None:
    description = (
        "Donald Trump says he may meet Vladimir Putin soon after taking office; the Kremlin "
        "says it is open to talks."
    )
    assert summarize(seed_article(summary=description)).text == description


def test_no_corpus_summary_opens_mid_thought() -> None:
    for article in corpus_articles():
        for count in (1, 2):
            summary = summarize(article, sentences=count)
            assert summary.sentences, article.origin
            assert not opens_mid_thought(summary.sentences[0]), (article.origin, summary.text)
