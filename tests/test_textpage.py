"""Scraped plain-text pages: the seed page and a handful of differently shaped ones."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.models import Article
from digest.sources import read_source
from digest.sources.textpage import date_in_line
from tests.conftest import SEED

PAGES = Path(__file__).parent / "fixtures" / "pages"


def read_one(path: Path, tz: tzinfo = UTC) -> Article:
    result = read_source(str(path), tz=tz)
    assert result.failures == []
    assert len(result.articles) == 1
    return result.articles[0]


def test_seed_page() -> None:
    result = read_source(str(SEED))
    assert result.failures == []
    [article] = result.articles
    assert article.title == (
        "Trump and Putin Eye a New Meeting – Could This Be the Start of a New Era for "
        "U.S.-Russia Relations?"
    )
    assert article.published is not None
    assert article.published.date() == date(2025, 4, 1)
    assert article.date_flag is None
    assert article.text.startswith("Donald Trump, who flaunted")
    assert article.text.endswith("worsen their own situation.")
    for furniture in (
        "Hot this week",
        "Topics",
        "Related Articles",
        "POCO F7 Pro",
        "Gold Tops $3,100",
        "Golf Diplomacy",
        "joint press conference",
        "AFP Yonhap News",
    ):
        assert furniture not in article.text
    assert article.text.count("\n\n") == 3  # four body paragraphs
    assert "Lunar Ambitions Accelerate as Korea Develops Rover Propulsion System" in article.related
    assert "Golf Diplomacy? Vietnam Courts Trump to Dodge Tariffs" in article.related
    assert len(article.related) == len(set(article.related)) == 8
    assert Path(article.origin).resolve() == SEED.resolve()
    assert article.source is None and article.url is None


@dataclass
class Expected:
    name: str
    title: str
    published: datetime | None
    starts: str
    ends: str
    absent: tuple[str, ...]
    related: tuple[str, ...]
    author: str | None = None
    section: str | None = None


CASES = [
    Expected(
        "iso-date-byline.txt",
        "Port of Busan Handles Record Container Volume in First Quarter",
        datetime(2025, 4, 1, tzinfo=UTC),
        "The Port of Busan handled",
        "keep up with demand.",
        ("Advertisement", "By Jane Kim", "Most Read", "Won Slides"),
        (
            "Shipbuilders Win Orders for Ammonia-Fuelled Carriers",
            "Won Slides to Two-Year Low Against the Dollar",
        ),
        author="Jane Kim",
    ),
    Expected(
        "breadcrumb-abbrev-date.txt",
        "Lunar Lander Sends Back First Images From the Moon's South Pole",
        datetime(2025, 4, 1, tzinfo=UTC),
        "A robotic lander",
        "in one piece.",
        ("Home >", "Share this article", "Photo:", "boulder field near", "Trending now"),
        (
            "Astronauts Grow Lettuce on the Space Station Without Soil",
            "Solar Storm Sparks Auroras as Far South as Spain",
        ),
        section="Space",
    ),
    Expected(
        "time-with-zone.txt",
        "Samsung and SK Hynix Shares Jump on Memory Price Rebound",
        datetime(2025, 4, 1, 0, 14, tzinfo=UTC),  # 09:14 KST
        "Shares of South Korea's",
        "third straight session.",
        ("dealing room", "Yonhap", "Related Articles", "Battery Makers"),
        ("Battery Makers Cut Output as EV Sales Cool",),
    ),
    Expected(
        "published-label.txt",
        "Dutch Pension Funds Shift Billions Into Wind and Solar Projects",
        datetime(2025, 4, 1, tzinfo=UTC),  # 01/04/2025 is day first
        "Pension funds in the Netherlands",
        "could cut.",
        ("Published", "Read more:", "More from Business", "Bakery Chain"),
        (
            "Bakery Chain Expands to Germany After Record Year",
            "Airline Orders 30 New Jets to Replace Ageing Fleet",
        ),
    ),
    Expected(
        "updated-dotted-wrapped.txt",
        "City Council Votes to Turn Old Rail Yard Into a Public Park",
        datetime(2025, 4, 1, 10, 0, tzinfo=UTC),
        "The city council voted on Monday to turn a disused rail yard on the east side of the "
        "river into a public park, ending a decade-long fight over the land between developers "
        "and neighbourhood groups.",
        "Construction is expected to start next year.",
        ("Updated", "Read more", "Library Extends"),
        ("Library Extends Opening Hours on Weekends",),
    ),
    Expected(
        "title-first-byline-date.txt",
        "Households Cut Spending on Eating Out as Prices Keep Rising",
        datetime(2025, 4, 1, tzinfo=UTC),
        "Families are spending less",
        "next rate decision.",
        ("Economy\n", "Marta Ruiz", "Elsewhere on the site", "Farmers Warn", "Rent Controls"),
        (
            "Farmers Warn of Poor Harvest After Dry Spring",
            "Train Fares to Rise by 4 Percent in July",
            "Rent Controls Extended for Another Year",
        ),
        author="Marta Ruiz",
        section="Economy",
    ),
    Expected(
        "site-name-slash-crumbs.txt",
        "Ferry Operators Add Night Sailings Between Busan and Fukuoka",
        datetime(2025, 4, 1, 5, 30, tzinfo=UTC),  # 14:30 GMT+9
        "Two ferry operators will add",
        "to match the new timetable.",
        (
            "Harbour Times",
            "News /",
            "Getty",
            "Passengers board",
            "Copy link",
            "Advertisement",
            "Trending",
            "Typhoon",
        ),
        (
            "Typhoon Season Expected to Start Early This Year",
            "Busan Film Festival Names Its Jury President",
            "Subway Line 3 Closes for Weekend Repairs",
        ),
        author="Park Soo-jin",
        section="Asia",
    ),
    Expected(
        "getty-caption-twice-topics.txt",
        "Scientists Map the Oldest Known Forest Floor in Britain",
        datetime(2025, 4, 1, 9, 14, tzinfo=UTC),  # 10.14 BST
        "Scientists have mapped",
        "earlier than was thought.",
        (
            "Fossilised tree stumps",
            "Listen to this",
            "Share this",
            "Copy link",
            "Topics",
            "Fossils",
            "Geology",
            "Most Read",
            "Roman Bath",
        ),
        (
            "Archaeologists Find Roman Bath House Under Car Park",
            "Puffin Numbers Recover on Scottish Islands",
        ),
        author="Helen Ward and Tom Price",
    ),
    Expected(
        "photo-credit-line-you-may-like.txt",
        "Copper Prices Climb to a Ten-Month High on Supply Worries",
        datetime(2025, 4, 1, 13, 14, tzinfo=UTC),  # 9:14 a.m. EDT
        "Copper prices rose",
        "until the strike is settled.",
        (
            "Markets |",
            "copper cathodes",
            "Photo: Reuters",
            "Read more",
            "You may also like",
            "Oil Slips",
            "All rights reserved",
        ),
        ("Oil Slips as OPEC Signals Output Increase", "Gold Holds Near Record as Dollar Weakens"),
        author="John Smith and Ana Lee",
        section="Commodities",
    ),
    Expected(
        "iso-timestamp-unknown-heading.txt",
        "Clinics Extend Evening Hours to Cut Waiting Lists",
        datetime(2025, 4, 1, 0, 14, tzinfo=UTC),  # the first of the two timestamps
        "Public health clinics",
        "already short of nurses.",
        ("Reporter", "hyejin@", "From our partners", "Sleep Better", "Pollen"),
        (
            "Five Ways to Sleep Better Tonight",
            "Why Walking After Dinner Helps Your Heart",
            "New Allergy Season Starts Earlier Than Ever",
        ),
        author="Kim Hye-jin",
        section="Health",
    ),
    Expected(
        "title-site-bar-dotted-date.txt",
        "Night Trains Return to the Alps After Twenty Years",
        datetime(2025, 4, 1, 9, 14, tzinfo=UTC),
        "Overnight trains between Zurich",
        "on our website.",
        (
            "Rail Europe News",
            "Home ›",
            "Story continues",
            "Scroll to continue",
            "Related Stories",
            "Eurostar",
            "Tags:",
        ),
        ("Eurostar Adds Direct Trains to Cologne", "New Ski Resort Shuttle Cuts Journey Times"),
        section="Rail",
    ),
    Expected(
        "wire-story-dateline-no-furniture.txt",
        "Engineers Test a Wind Turbine That Floats in Deep Water",
        datetime(2025, 4, 1, tzinfo=UTC),
        "OSLO (AP) — Engineers in Norway",
        "The test will run for two years.",
        ("Sci-Tech", "April 1st", "Written by"),
        (),
        author="Lars Eriksen",
        section="Sci-Tech",
    ),
    Expected(
        "caption-bracket-most-popular.txt",
        "Spain Opens Its First Offshore Wave Power Station",
        datetime(2025, 4, 1, 17, 2, tzinfo=UTC),  # 1:02 PM EDT
        "Spain has opened",
        "three more stations by 2030.",
        (
            "World >",
            "Mutriku",
            "EPA",
            "Advertisement",
            "See also",
            "Most Popular",
            "Heatwave",
            "Sign up",
        ),
        ("Heatwave Warning Issued for Southern Italy", "Paris Bans Cars From Forty More Streets"),
        section="Europe",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fixture_pages(case: Expected) -> None:
    article = read_one(PAGES / case.name)
    assert article.title == case.title
    assert article.published == case.published
    assert article.date_flag is None
    text: str = article.text
    assert text.startswith(case.starts)
    assert text.endswith(case.ends)
    for absent in case.absent:
        assert absent not in text, absent
    assert list(case.related) == article.related
    assert article.author == case.author
    assert article.section == case.section
    assert "\n\n\n" not in text and "  " not in text


def test_subheading_inside_the_body_is_kept() -> None:
    article = read_one(PAGES / "title-first-byline-date.txt")
    paragraphs = article.text.split("\n\n")
    assert "What the data shows" in paragraphs
    assert paragraphs.index("What the data shows") == 2


def test_date_only_line_is_midnight_in_the_given_timezone() -> None:
    seoul = ZoneInfo("Asia/Seoul")
    article = read_one(PAGES / "iso-date-byline.txt", tz=seoul)
    assert article.published == datetime(2025, 4, 1, tzinfo=seoul)
    assert article.published.utcoffset() == timedelta(hours=9)


def test_page_without_a_date_falls_back_to_the_file_time(tmp_path: Path) -> None:
    page = tmp_path / "no-date.txt"
    page.write_bytes((PAGES / "no-date.txt").read_bytes())
    mtime = datetime(2025, 3, 28, 15, 0, tzinfo=UTC)
    os.utime(page, (mtime.timestamp(), mtime.timestamp()))
    article = read_one(page)
    assert article.published == mtime
    assert article.date_flag == "missing"
    assert article.title == "Volunteers Plant Ten Thousand Trees Along the Riverbank"
    assert "Hot this week" not in article.text


def test_future_date_is_flagged(tmp_path: Path) -> None:
    later = date.today() + timedelta(days=30)
    page = tmp_path / "future.txt"
    page.write_text(
        f"{later:%B %d, %Y}\n\nA Page Dated Next Month by Mistake\n\n"
        "This paragraph is long enough to be the body of the article itself.\n",
        encoding="utf-8",
    )
    article = read_one(page)
    assert article.date_flag == "future"
    assert article.published.date() == later


def test_page_with_only_a_title_is_a_failure(tmp_path: Path) -> None:
    page = tmp_path / "stub.txt"
    page.write_text("April 1, 2025\n\nJust a Headline With Nothing Below It\n", encoding="utf-8")
    result = read_source(str(page))
    assert result.articles == []
    [failure] = result.failures
    assert failure.source == str(page)
    assert "no article text" in failure.reason


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Tuesday, April 1, 2025", datetime(2025, 4, 1, tzinfo=UTC)),
        ("Tue 01 Apr 2025", datetime(2025, 4, 1, tzinfo=UTC)),
        ("2025-04-01", datetime(2025, 4, 1, tzinfo=UTC)),
        ("April 1, 2025 09:14 KST", datetime(2025, 4, 1, 0, 14, tzinfo=UTC)),
        ("Published: 01/04/2025", datetime(2025, 4, 1, tzinfo=UTC)),
        ("Updated 2025.04.01 10:00", datetime(2025, 4, 1, 10, 0, tzinfo=UTC)),
        ("Posted 1 April 2025, 14:30 GMT+9", datetime(2025, 4, 1, 5, 30, tzinfo=UTC)),
        ("Tuesday 1 April 2025 10.14 BST", datetime(2025, 4, 1, 9, 14, tzinfo=UTC)),
        ("입력 2025.04.01 10:00", datetime(2025, 4, 1, 10, 0, tzinfo=UTC)),
        ("2025년 4월 1일", datetime(2025, 4, 1, tzinfo=UTC)),
        ("04/13/2025", datetime(2025, 4, 13, tzinfo=UTC)),
        ("By Jane Kim | Apr. 1, 2025 | 3 min read", datetime(2025, 4, 1, tzinfo=UTC)),
        ("April 2025", None),
        ("Share this article", None),
    ],
)
def test_date_lines(line: str, expected: datetime | None) -> None:
    assert date_in_line(line) == expected
