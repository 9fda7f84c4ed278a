"""Plotting: fixed palettes, red time-like axes, and figures whose bytes do not change."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import yaml

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from lowdim.figures import theme as plotting  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _figure() -> plt.Figure:
    plotting.use_theme()
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 0, 2], color=plotting.arch_color("vit"))
    return fig


def test_savefig_writes_only_the_stem_and_stable_bytes(tmp_path):
    first = plotting.savefig(_figure(), "figXX_test", tmp_path, ("pdf", "png", "svg"))
    blobs = [p.read_bytes() for p in first]
    second = plotting.savefig(_figure(), "figXX_test", tmp_path, ("pdf", "png", "svg"))
    assert [p.read_bytes() for p in second] == blobs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figXX_test.pdf", "figXX_test.png",
                                                          "figXX_test.svg"]
    assert b"CreationDate" not in blobs[0]


def test_paper_palette_and_stable_extra_colours():
    assert plotting.arch_color("allcnn") == "#e41a1c"
    assert plotting.arch_color("wr-16-4-64") == "#ffff33"
    extra = plotting.arch_color("wr-22-4-8")
    assert extra == plotting.arch_color("wr-22-4-8")
    assert extra not in plotting.ARCH_COLORS.values()


def shipped_profiles() -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text())
            for path in sorted((ROOT / "profiles").glob("*.yaml"))}


def grid_archs(grid: dict | list) -> set[str]:
    """The architectures of a `grid` section, one block (a mapping) or a list of blocks."""
    return {arch for block in (grid if isinstance(grid, list) else [grid])
            for arch in block["arch"]}


def test_every_architecture_of_the_shipped_profiles_has_its_own_colour():
    names = sorted({arch for profile in shipped_profiles().values()
                    for arch in grid_archs(profile["grid"])})
    colours = {name: plotting.arch_color(name) for name in names}
    assert len(set(colours.values())) == len(names), colours
    assert all(name in plotting.ARCH_COLORS for name in names)  # none left to the name hash


def test_the_size_pair_of_every_profile_is_told_apart():
    for name, profile in shipped_profiles().items():
        pair = (profile.get("trajectories") or {}).get("size_pair")
        if pair:
            small, large = (matplotlib.colors.to_rgb(plotting.arch_color(a)) for a in pair)
            # far apart in RGB, not two shades of one hue
            assert sum((a - b) ** 2 for a, b in zip(small, large, strict=True)) ** 0.5 > 0.5, name


def test_pdfs_embed_truetype_fonts(tmp_path):
    (pdf,) = plotting.savefig(_figure(), "figXX_fonts", tmp_path, ("pdf",))
    data = pdf.read_bytes()
    assert b"/FontFile2" in data and b"/Type3" not in data


def test_negative_axes_are_red():
    fig, ax = plt.subplots()
    plotting.mark_negative_axes(ax, x_negative=False, y_negative=True)
    assert matplotlib.colors.to_hex(ax.spines["left"].get_edgecolor()) == "#ff0000"
    assert matplotlib.colors.to_hex(ax.spines["bottom"].get_edgecolor()) != "#ff0000"
    assert plotting.pc_label(2, -0.5) == "PC2 (λ<0)" and plotting.pc_label(1, 3.0) == "PC1"
    plt.close(fig)
