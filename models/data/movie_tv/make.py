"""Write train/dev/test.jsonl of the movie-versus-TV-show dataset (see DATA_CARD.md).

    .venv/bin/python models/data/movie_tv/make.py

Sentences combine hand-written titles, phrases and sentence frames. Phrases are split between train, dev
and test, so a model must recognise the *kind* of statement (seasons, episodes and networks against films,
cinemas and box office), not memorise sentences it saw.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
SEED = 0

TITLES = [
    "The Silver Harbor", "Northern Lights", "A Quiet Orchard", "Paper Kingdoms", "The Last Lighthouse",
    "Midnight at Union Square", "Glass Mountain", "The Cartographer", "River of Sparrows", "Red Dust Valley",
    "The Winter Ledger", "Neon Saints", "Small Hours", "The Salt Road", "Hollow Bay", "Iron and Ivy",
]

MOVIE = [
    "the film runs just under two hours",
    "it premiered at the Cannes Film Festival",
    "the director's cut adds twenty minutes of footage",
    "it earned a fortune at the box office on its opening weekend",
    "the sequel opens in theaters next summer",
    "critics praised the film's final act",
    "the movie was shot on 35mm film stock",
    "audiences lined up outside cinemas on opening night",
    "it won the Oscar for best picture",
    "the screenplay squeezes a whole novel into one feature",
    "the trailer played before every blockbuster this spring",
    "the studio moved its theatrical release to December",
    "the two-hour runtime never drags",
    "the film's score was nominated for an Academy Award",
    "it is a standalone feature with no sequel planned",
    "the cinema was sold out for the midnight screening",
    "the movie's budget topped two hundred million dollars",
    "it finally arrives on Blu-ray after its theatrical run",
    "the film festival jury gave it the top prize",
    "the picture opens wide in cinemas on Friday",
    "the remake of the 1970s film lands in theaters this fall",
    "the final cut of the movie lasts 148 minutes",
    "moviegoers cheered when the credits rolled",
    "the feature-length documentary screened at Sundance",
]

TV = [
    "the second season picks up where the first left off",
    "each episode runs about forty minutes",
    "the network renewed it for a third season",
    "the series finale aired last spring",
    "the showrunner teased a cliffhanger for next season",
    "fans binged the whole season in one weekend",
    "the pilot episode introduced the main cast",
    "new episodes stream every Friday",
    "it won the Emmy for outstanding drama series",
    "the sitcom was filmed before a live studio audience",
    "the miniseries tells its story over six episodes",
    "the show's writers' room is planning season four",
    "the channel moved it to a prime-time slot",
    "the episode ended on a cliffhanger before the mid-season break",
    "the cable drama was cancelled after two seasons",
    "the streaming service ordered ten more episodes",
    "the anthology series tells a new story every season",
    "the season premiere drew record ratings for the network",
    "viewers tune in every Sunday night for a new episode",
    "the spin-off series follows a minor character from season one",
    "the reunion special aired after the show ended its run",
    "the late-night talk show tapes five episodes a week",
    "the animated series is entering its tenth season",
    "the broadcaster announced a holiday special episode",
]

FRAMES = [
    "{title}: {phrase}.",
    "About {title}, {phrase}.",
    "I read that with {title}, {phrase}.",
    "{title} is getting attention because {phrase}.",
    "My friend says {phrase} in {title}.",
]

# phrases per split, out of 24 per class: held out so test measures generalisation
SPLITS = {"train": range(0, 16), "dev": range(16, 20), "test": range(20, 24)}
PER_PHRASE = {"train": 8, "dev": 6, "test": 6}


def build() -> dict[str, list[dict]]:
    rng = random.Random(SEED)
    out = {}
    for split, idx in SPLITS.items():
        rows = []
        for label, phrases in ((0, MOVIE), (1, TV)):
            for i in idx:
                for _ in range(PER_PHRASE[split]):
                    frame, title = rng.choice(FRAMES), rng.choice(TITLES)
                    text = frame.format(title=title, phrase=phrases[i])
                    rows.append({"text": text[0].upper() + text[1:], "label": label})
        rng.shuffle(rows)
        out[split] = rows
    return out


def main() -> None:
    for split, rows in build().items():
        with open(HERE / f"{split}.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        print(f"{split}: {len(rows)} sentences")


if __name__ == "__main__":
    main()
