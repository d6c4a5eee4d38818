"""MinAtar (Young & Tian 2019, arXiv 1903.03176): five miniature Atari games on a 10x10 grid whose
observations are C boolean object maps, fast enough in pure Python for RL on a CPU.

A comma list of games (`MinAtar/SpaceInvaders,MinAtar/Asterix,MinAtar/Seaquest`) is continual
MinAtar, as C-CHAIN and other continual-RL studies play it: one network plays the games in turn,
`env.switch_every` agent steps each. Observations hold the union of the games' channels, matched by
the channel names MinAtar gives them (a channel a game lacks stays zero), and actions are the union
of the games' action sets: an action a game ignores does nothing there, as in MinAtar itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from configs.errors import UserError
from configs.schema import EnvConfig

GAMES = {
    "asterix": "Asterix",
    "breakout": "Breakout",
    "freeway": "Freeway",
    "seaquest": "Seaquest",
    "space_invaders": "SpaceInvaders",
}
"""MinAtar's module names and the ids they are written with (`MinAtar/SpaceInvaders`)."""
MINATAR_ID = re.compile(r"^minatar/(?P<game>[a-z_]+?)(?:-v\d+)?$", re.IGNORECASE)
SIDE = 10
"""MinAtar's grid is SIDE x SIDE cells."""
ON = 255
"""An occupied cell as a uint8 intensity: the network scales uint8 inputs by 1/255, as for Atari
frames, so it sees MinAtar's own 0/1 maps."""


def is_minatar(env_id: str) -> bool:
    """Whether `env_id` names MinAtar games (one, or a comma list)."""
    return any(part.strip().lower().startswith("minatar/") for part in env_id.split(","))


def minatar_games(env_id: str) -> list[str]:
    """['space_invaders', 'asterix'] for `MinAtar/SpaceInvaders,MinAtar/Asterix` (also accepted:
    `MinAtar/space_invaders`, `MinAtar/Breakout-v1`); a UserError for anything else in the list."""
    games = []
    for part in env_id.split(","):
        match = MINATAR_ID.match(part.strip())
        game = match and re.sub(r"(?<=[a-z])(?=[A-Z])", "_", match.group("game")).lower()
        if game not in GAMES:
            raise UserError(
                f"'{part.strip()}' in --env '{env_id}' is not a MinAtar game. MinAtar ids are "
                f"{', '.join(f'MinAtar/{name}' for name in GAMES.values())}; a comma list of them "
                "plays them in turn (continual MinAtar, with env.switch_every)."
            )
        games.append(game)
    return games


def run_name(games: Sequence[str]) -> str:
    """`minatar_breakout`, or `minatar_space_invaders-asterix` for a sequence (a directory name)."""
    return "minatar_" + "-".join(games)


def game_at(step: int, num_games: int, switch_every: int) -> int:
    """Index of the game played at agent step `step`: each game in turn for `switch_every` steps,
    cycling; a pure function of the step, so a resumed run plays what an uninterrupted one would."""
    return 0 if switch_every == 0 else (step // switch_every) % num_games


def check_schedule(games: Sequence[str], switch_every: int) -> None:
    """Several games need a switch period and one game needs none: a UserError otherwise."""
    if len(games) > 1 and switch_every <= 0:
        raise UserError(
            f"--env lists {len(games)} MinAtar games ({', '.join(games)}), which are played in "
            f"turn: set env.switch_every to the agent steps per game (> 0), e.g. "
            "--set env.switch_every=500000; or name one game."
        )
    if len(games) == 1 and switch_every != 0:
        raise UserError(
            f"env.switch_every = {switch_every} switches between games, but --env names one "
            f"({games[0]}); list several (MinAtar/SpaceInvaders,MinAtar/Asterix) or set it to 0."
        )


def load_environment() -> type:
    """minatar.Environment, or a UserError naming the extra when minatar is not installed."""
    try:
        from minatar import Environment
    except ImportError:
        raise UserError(
            "MinAtar games need the optional extra [minatar], which is not installed here: "
            'pip install -e ".[minatar]" installs minatar 1.0.15.'
        ) from None
    return Environment


def union(lists: Sequence[Sequence]) -> list:
    """The items of every list, each once, in order of first appearance."""
    return list(dict.fromkeys(item for items in lists for item in items))


class MinAtarVectorEnv(gym.vector.VectorEnv):
    """`num_envs` MinAtar games stepped in turn, under gymnasium 1.x's next-step autoreset (the
    step after a game ends ignores its action and returns the next game's first observation, reward
    0): the contract of ale-py's vector env, so EpisodeTracker and replay treat both alike.

    Observations are uint8 [num_envs, C, 10, 10] (channels first, ON or 0), rewards raw. Agent steps
    (rows that are not resets) are counted from `step`; with `switching`, the step that reaches a
    multiple of `switch_every` truncates every game under way and the resets that follow start the
    game then due. `info["game"]` names each row's game when several are listed.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        games: Sequence[str],
        num_envs: int,
        config: EnvConfig,
        *,
        step: int = 0,
        switching: bool = True,
    ) -> None:
        environment = load_environment()
        self.games, self.num_envs, self.step_count = list(games), num_envs, step
        self.switch_every = config.switch_every if switching else 0
        self.max_frames = config.max_episode_frames
        self.playing = game_at(step, len(self.games), config.switch_every)
        distinct = list(dict.fromkeys(self.games))
        # One emulator per (env, game): each keeps its own RNG and sticky-action memory.
        self.emulators = [
            {g: environment(g, sticky_action_prob=config.sticky_actions) for g in distinct}
            for _ in range(num_envs)
        ]
        first = self.emulators[0]
        self.channels = union([list(first[g].env.channels) for g in distinct])
        # Each game's channel i lands in the union's channel slots[game][i].
        self.slots = {
            g: np.array([self.channels.index(name) for name in first[g].env.channels])
            for g in distinct
        }
        full = range(first[distinct[0]].num_actions())
        self.actions = np.array(
            list(full)
            if config.full_action_space
            else sorted(union([first[g].minimal_action_set() for g in distinct]))
        )
        self.single_observation_space = gym.spaces.Box(
            0, ON, (len(self.channels), SIDE, SIDE), np.uint8
        )
        self.single_action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.game_of = np.full(num_envs, self.games[self.playing], dtype=object)
        self.resetting = np.zeros(num_envs, dtype=bool)
        self.frames = np.zeros(num_envs, dtype=np.int64)

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]:
        """Seed every emulator (env i, game j: seed + j * num_envs + i) and start new games."""
        if seed is not None:
            for i, per_game in enumerate(self.emulators):
                for j, emulator in enumerate(per_game.values()):
                    emulator.seed(seed + j * self.num_envs + i)
        for i in range(self.num_envs):
            self.start(i)
        self.resetting[:] = False
        return self.observe(), self.info()

    def start(self, index: int) -> None:
        game = self.games[self.playing]
        self.emulators[index][game].reset()
        self.game_of[index] = game
        self.frames[index] = 0

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        valid = ~self.resetting
        switched = self.advance(int(valid.sum()))  # before the resets, which start the new game
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        for i, action in enumerate(np.asarray(actions)):
            if self.resetting[i]:
                self.start(i)
            else:
                rewards[i], terminated[i] = self.emulators[i][self.game_of[i]].act(
                    self.actions[action]
                )
        self.frames += valid
        truncated = valid & ~terminated & ((self.frames >= self.max_frames) | switched)
        self.resetting = terminated | truncated
        return self.observe(), rewards, terminated, truncated, self.info()

    def advance(self, taken: int) -> bool:
        """Count `taken` agent steps; True when they bring another game's turn."""
        self.step_count += taken
        if not self.switch_every:
            return False
        due = game_at(self.step_count, len(self.games), self.switch_every)
        switched, self.playing = due != self.playing, due
        return switched

    def observe(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, *self.single_observation_space.shape), dtype=np.uint8)
        for i, game in enumerate(self.game_of):
            state = self.emulators[i][game].state()  # bool [10, 10, C_game]
            obs[i, self.slots[game]] = state.transpose(2, 0, 1) * np.uint8(ON)
        return obs

    def info(self) -> dict:
        return {"game": self.game_of.copy()} if len(set(self.games)) > 1 else {}

    def close_extras(self, **kwargs) -> None:
        self.emulators = []
