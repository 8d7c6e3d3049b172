"""The training configuration (``configs/train.yaml``): a pydantic schema, one model per section.

Unknown or mistyped keys are errors with the file, line and a suggestion (``mmgen.yamlfile``).
Relative paths are relative to the project root (the folder with the ``pyproject.toml`` that
``mmgen init`` wrote), or to the config's folder outside a project. A value that names no local
file for ``model.llm`` / ``model.tokenizer`` is taken as a Hugging Face hub name.

Every default sits beside its field with the reason for it; ``templates/project/train.yaml.jinja``
is the annotated example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

from mmgen import project
from mmgen.errors import ConfigError, MmgenError, did_you_mean
from mmgen.model.trainable import STAGES
from mmgen.yamlfile import Origins, field_error, load_yaml_model, where


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(Strict):
    """The language model, its tokenizer, and where the weights start from."""

    llm: str | None = None  # a pretrained causal LM: hub name or local path
    # or a random-init LLM from this config (model_type + fields; MultimodalConfig's text_config)
    text_config: dict[str, Any] | None = None
    init_from: str | None = None  # or a saved MultimodalModel folder (e.g. a finished run)
    tokenizer: str | None = None  # default: the llm's, or the one saved in init_from
    # exact packed attention in every case: mmgen_varlen_sdpa runs sdpa per packed sample (no
    # T x T mask; 3-4x faster packed steps on CPU here), sdpa/eager get a block-diagonal mask,
    # flash_attention_2/3 get varlen kwargs
    attn_implementation: str = "mmgen_varlen_sdpa"
    gradient_checkpointing: bool = False  # trade compute for memory on long packs

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        given = [k for k in ("llm", "text_config", "init_from") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of llm, text_config, init_from"
                f" (got {', '.join(given) or 'none'})"
            )
        if self.text_config is not None and "model_type" not in self.text_config:
            raise ValueError("text_config needs its model_type (e.g. llama)")
        return self


class RandomInit(Strict):
    """A random-init encoder and processor, for offline runs: the spec's ``test`` block (its tiny
    encoder and processor), updated with ``encoder`` / ``processor`` here."""

    spec: str | None = None  # built-in spec name or YAML path; default: the modality's type
    encoder: dict[str, Any] = Field(default_factory=dict)
    processor: dict[str, Any] = Field(default_factory=dict)
    # init seed of the saved transformers encoder (built-in and module encoders are built with
    # the model, from the run's seed)
    seed: int = 0


class ModalitySection(Strict):
    """One modality; its key is the dataset entries' ``type``."""

    type: str | None = None  # the registered modality (default: the key)
    config: dict[str, Any] = Field(default_factory=dict)  # fields of its config class
    random_init: RandomInit | None = None
    # recompute the encoder's activations in the backward pass instead of keeping them (per
    # layer for transformers encoders): less memory for large images, long audio and video
    gradient_checkpointing: bool = False


class SourceSection(Strict):
    """One source of a mixture (``data.train`` as a list); the semantics are
    ``mmgen/data/mixture.py``'s. Every source has a weight, or none has one."""

    path: str  # JSONL file or `datasets.save_to_disk` folder
    name: str | None = None  # in the summary and metrics.jsonl; default: the file name's stem
    # share of the epoch's samples, whose count is all sources' rows together (normalised)
    weight: float | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)  # passes per epoch, fractional ok (default 1)
    max_samples: int | None = Field(None, gt=0)  # only the source's first N rows are used

    @model_validator(mode="before")
    @classmethod
    def _plain_path(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value  # `- b.jsonl`: epochs 1

    @model_validator(mode="after")
    def _weight_or_epochs(self) -> SourceSection:
        if self.weight is not None and self.epochs is not None:
            raise field_error("epochs", "give weight or epochs, not both")
        return self

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem


def _split_kind(value: Any) -> str | None:
    return "str" if isinstance(value, str) else "list[]" if isinstance(value, list) else None


# a path, or a list of sources: the tags keep pydantic from reporting the branch not taken
# (yamlfile drops tags of the form `list[...]` from the key path)
TrainSplit = Annotated[
    Annotated[str, Tag("str")] | Annotated[list[SourceSection], Field(min_length=1), Tag("list[]")],
    Discriminator(
        _split_kind,
        custom_error_type="train_split",
        custom_error_message="expected a path, or a list of sources {path, weight | epochs, ...}",
    ),
]


class DataSection(Strict):
    train: TrainSplit  # JSONL file or `datasets.save_to_disk` folder, or a mixture of sources
    eval: str | None = None  # eval loss (and accuracy during training) on this split
    test: str | None = None  # held-out split: generation + exact match at the end
    media_root: str | None = None  # relative media paths start here (default: data file's dir)
    on_error: Literal["raise", "skip"] = "raise"  # skip: bad samples are counted and reported
    max_length: int | None = Field(None, gt=0)  # most tokens per sample
    truncation: Literal["shorten", "error"] = "shorten"  # cut at a modality-item boundary
    cache: bool = False  # keep processed samples in memory (small datasets: no re-decoding)
    num_workers: int = Field(0, ge=0)  # DataLoader workers decoding media in parallel
    # the length scan (kept in $MMGEN_CACHE/index, reused by later runs and every rank):
    index: bool = True  # keep it; false: measure every run
    scan_workers: int | None = Field(None, gt=0)  # processes measuring rows; null: every core
    scan_headers: bool = True  # read each item's header: missing/unreadable files found up front
    chat_template: str = "auto"  # the tokenizer's template, "plain", or a Jinja template


class PackingSection(Strict):
    layout: Literal["packed", "padded"] = "packed"  # padded: the HF-style baseline
    capacity: int = Field(4096, gt=0)  # tokens per pack
    max_items: int | None = Field(None, gt=0)  # modality items per pack (bounds encoder batch)
    strategy: Literal["bfd", "ffd", "sequential"] = "bfd"  # best-fit decreasing packs tightest
    packs_per_batch: int = Field(1, gt=0)
    overlong: Literal["error", "drop", "truncate"] = "error"
    batch_size: int = Field(8, gt=0)  # samples per batch with layout: padded
    group_by_length: bool = False  # padded: batches of similar lengths (HF group_by_length)

    @model_validator(mode="after")
    def _grouping_needs_padding(self) -> PackingSection:
        if self.group_by_length and self.layout != "padded":
            raise ValueError("group_by_length applies to layout: padded (packs have no padding)")
        return self


class LoraSection(Strict):
    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    # the LLM's layers that get adapters: all-linear, or module names ([q_proj, v_proj]); []:
    # none (adapters on encoders only)
    target_modules: list[str] | str = "all-linear"
    # the encoders' layers that get adapters too (null: none): all-linear or module names for
    # every modality's encoder, or per modality ({image: [q_proj, v_proj]})
    encoder_target_modules: list[str] | str | dict[str, list[str] | str] | None = None


class TrainParts(Strict):
    """What trains; unset parts keep the stage preset's choice."""

    llm: bool | Literal["lora"] | None = None
    encoders: bool | Literal["lora"] | list[str] | None = None  # lora: their adapters only
    projectors: bool | list[str] | None = None


class PartValues(Strict):
    """A value per part of the model (``optimizer.lr``, ``optimizer.weight_decay``). The LoRA
    adapters, on the LLM or an encoder, are the ``lora`` part, not the part they adapt."""

    llm: float | None = Field(None, ge=0)
    encoders: float | None = Field(None, ge=0)
    projectors: float | None = Field(None, ge=0)
    lora: float | None = Field(None, ge=0)

    def get(self, part: str) -> float | None:
        return getattr(self, part)


def _number_or_parts(value: Any) -> str:
    return "dict" if isinstance(value, (dict, PartValues)) else "float"


def _per_part(number: Any) -> Any:
    """A number for every part, or a mapping part -> number (tags keep pydantic from reporting
    the branch not taken; yamlfile drops them from the key path)."""
    return Annotated[
        Annotated[float, number, Tag("float")] | Annotated[PartValues, Tag("dict")],
        Discriminator(_number_or_parts),
    ]


# a learning rate: one for every part, or per part ({llm: 2e-5, projectors: 1e-3}; 0 freezes)
LearningRate = _per_part(Field(gt=0))
WeightDecay = _per_part(Field(ge=0))


STAGE_PRESETS = tuple(STAGES)  # alignment, end_to_end, lora, full (mmgen/model/trainable.py)


class StageSection(Strict):
    """One training stage: a preset name (alignment, end_to_end, lora, full) or any name with
    every part set in ``train``. Each stage gets a fresh optimizer and LR schedule."""

    name: str
    steps: int = Field(gt=0)  # optimizer steps in this stage
    train: TrainParts = Field(default_factory=TrainParts)
    # default: optimizer.lr; a number sets every part's for this stage, a mapping the parts
    # it names (the others keep optimizer.lr's)
    lr: LearningRate | None = None
    warmup_steps: int | None = Field(None, ge=0)  # default: schedule.warmup_steps
    lora: LoraSection | None = None  # adapters added at this stage's start

    @model_validator(mode="after")
    def _parts(self) -> StageSection:
        if self.name not in STAGE_PRESETS:
            missing = [k for k, v in self.train if v is None]
            if missing:
                raise ValueError(
                    f"stage {self.name!r} is not a preset ({', '.join(STAGE_PRESETS)})"
                    f"{did_you_mean(self.name, STAGE_PRESETS)}; or set"
                    f" train.{', train.'.join(missing)}"
                )
        if self.train_llm == "lora" and self.lora is None:
            self.lora = LoraSection()
        return self

    @property
    def train_llm(self) -> bool | str | None:
        return "lora" if self.name == "lora" and self.train.llm is None else self.train.llm


class OptimizerSection(Strict):
    """AdamW with a parameter group per part and decay (``mmgen/train/param_groups.py``)."""

    # one LR for every part, or per part: {llm: 2e-5, encoders: 1e-5, projectors: 1e-3,
    # lora: 2e-4}; a part that trains needs one (0: it stays as it is). The schedule scales all
    lr: LearningRate = 1e-4
    # decoupled (AdamW) weight decay, or per part (an unnamed part: 0); never on biases, norms
    # and other 1-D parameters
    weight_decay: WeightDecay = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float | None = Field(1.0, gt=0)  # max global grad norm; null: no clipping
    grad_accum: int = Field(1, gt=0)  # micro-batches per optimizer step


class ScheduleSection(Strict):
    kind: Literal["linear", "cosine", "constant"] = "cosine"  # after the warmup
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # the LR decays to lr * min_lr_ratio


class DistributedSection(Strict):
    strategy: Literal["ddp", "fsdp"] = "ddp"  # fsdp: FSDP2 shards LLM layers (large LLMs)
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on GPU, gloo on CPU


class TrainSection(Strict):
    """How the loop treats a step gone wrong."""

    # a step whose loss or gradient norm is inf/NaN: stop before the update spreads it into the
    # weights (no checkpoint of that state), or skip the step (counted in metrics.jsonl)
    on_nonfinite: Literal["stop", "skip"] = "stop"


class CheckpointSection(Strict):
    every: int | None = Field(500, gt=0)  # optimizer steps; null: only on signals and at the end
    keep: int = Field(2, gt=0)  # the last K checkpoints stay
    dir: str | None = None  # default: <output_dir>/checkpoints


Reporter = Literal["jsonl", "tensorboard", "wandb"]


class WandbSection(Strict):
    """The Weights & Biases run (``logging.report_to`` lists ``wandb``)."""

    project: str = Field("mmgen", min_length=1)
    name: str | None = None  # the run's display name (default: the output folder's name)
    tags: list[str] = Field(default_factory=list)
    # online, offline (a local run folder for `wandb sync`) or disabled; null: $WANDB_MODE,
    # else online
    mode: Literal["online", "offline", "disabled"] | None = None


class LoggingSection(Strict):
    every: int = Field(10, gt=0)  # steps between metrics lines
    progress: bool = True  # a progress bar on rank 0 when stderr is a terminal, lines otherwise
    # where the metrics go. metrics.jsonl is always written (resume, the plot and the model
    # card read it); tensorboard: <output_dir>/tensorboard; wandb: a W&B run (logging.wandb)
    report_to: list[Reporter] | None = None  # null: [jsonl]
    tensorboard: bool | Literal["auto"] | None = None  # deprecated: report_to: [..., tensorboard]
    wandb: WandbSection = Field(default_factory=WandbSection)
    plot: bool = True  # the PNG of loss and accuracy curves at the end

    @model_validator(mode="after")
    def _one_switch(self) -> LoggingSection:
        if self.report_to is None or self.tensorboard is None:
            return self
        listed = "tensorboard" in self.report_to
        if self.tensorboard == "auto" or self.tensorboard != listed:
            said = "lists" if listed else "does not list"
            raise field_error(
                "tensorboard",
                f"deprecated, and report_to {said} tensorboard: drop logging.tensorboard",
            )
        return self

    @property
    def reporters(self) -> tuple[str, ...]:
        """What the run writes: jsonl always, then tensorboard and wandb as configured
        (``tensorboard: auto``: when the tensorboard package is installed)."""
        chosen = ["jsonl", *(self.report_to or [])]
        if self.tensorboard is True or (self.tensorboard == "auto" and _installed("tensorboard")):
            chosen.append("tensorboard")
        return tuple(dict.fromkeys(chosen))


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


class EvalSection(Strict):
    every: int | None = Field(None, gt=0)  # steps between evaluations; null: only at the end
    max_batches: int | None = Field(None, gt=0)  # eval-loss batches (null: the whole split)
    accuracy_samples: int | None = Field(100, ge=0)  # eval-split samples generated per eval
    max_new_tokens: int = Field(32, gt=0)
    batch_size: int = Field(32, gt=0)  # prompts per generate call
    # scores of the generated answers (mmgen.metrics): exact_match, token_f1, bleu, chrf,
    # rouge_l, wer, cer, multiple_choice; exact match is always computed (the accuracy)
    metrics: list[str] = Field(default_factory=lambda: ["exact_match"])

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        from mmgen.metrics import check_metrics

        try:
            return check_metrics(value)
        except MmgenError as exc:
            raise ValueError(str(exc)) from None


class TrainConfig(Strict):
    package: str | None = None  # project package whose modalities/ registers (default: pyproject)
    output_dir: str = "runs/train"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch threads per process (null: torch's default, one per core). Tiny models run fastest
    # on 1: their ops are too small to split, and idle threads spin against other processes
    threads: int | None = Field(None, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 CPU
    model: ModelSection
    modalities: dict[str, ModalitySection] = Field(default_factory=dict)
    data: DataSection
    packing: PackingSection = Field(default_factory=PackingSection)
    stages: list[StageSection] = Field(min_length=1)
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    distributed: DistributedSection = Field(default_factory=DistributedSection)
    train: TrainSection = Field(default_factory=TrainSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    eval: EvalSection = Field(default_factory=EvalSection)

    _source: Path = PrivateAttr(Path("<config>"))
    _lines: Origins = PrivateAttr(default_factory=dict)
    _root: Path = PrivateAttr(Path("."))

    @property
    def source(self) -> Path:
        return self._source

    @property
    def root(self) -> Path:
        """The folder relative paths are relative to."""
        return self._root

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def where(self, *loc: str | int) -> str:
        """``file:line: key.path`` of a key, for error messages."""
        return where(self._source, self._lines, loc)

    def error(self, loc: tuple[str | int, ...], message: str) -> ConfigError:
        return ConfigError(f"{self.where(*loc)}: {message}")

    def path(self, value: str) -> Path:
        """A path from the config, made absolute against ``root``."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self._root / path

    def name_or_path(self, value: str, *loc: str | int) -> str:
        """A local path when ``value`` names an existing file or folder, else ``value`` (a hub
        name). A value that can only be a path (``data/x/tokenizer``, ``./x``, ``/x``: hub names
        are ``name`` or ``owner/name``) and is missing is an error at ``loc``."""
        path = self.path(value)
        if path.exists():
            return str(path)
        if value.count("/") > 1 or value.startswith(("/", "./", "../", "~")):
            raise self.error(loc, f"no such file or folder: {path}")
        return value


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read and validate a training config; ``overrides`` are ``dotted.key=yaml`` strings
    (``stages.0.steps=20``) applied before validation."""
    path = Path(path)
    config, lines = load_yaml_model(path, TrainConfig, error=ConfigError, overrides=overrides)
    config._source, config._lines = path, lines
    config._root = project.find_root(path.resolve().parent) or path.resolve().parent
    _check_sources(config)
    return config


def _check_sources(config: TrainConfig) -> None:
    """What one source cannot see: weights on all sources or none, and distinct names."""
    sources = config.data.train
    if isinstance(sources, str):
        return
    weighted = sources[0].weight is not None
    named: dict[str, int] = {}
    for i, source in enumerate(sources):
        if (source.weight is not None) != weighted:
            loc: tuple[str | int, ...] = ("data", "train", i)
            if source.weight is not None:
                loc, what = (*loc, "weight"), "a weight, but data.train[0] has none"
            elif source.epochs is not None:
                loc, what = (*loc, "epochs"), "epochs, but data.train[0] has a weight"
            else:
                what = "no weight, but data.train[0] has one"
            rule = "give every source a weight or none (weights and epochs do not mix)"
            raise config.error(loc, f"{what}: {rule}")
        if source.label in named:
            where = "name" if source.name else "path"
            taken = f"data.train[{named[source.label]}]"
            message = f"the name {source.label!r} is taken by {taken}; give each source a name"
            raise config.error(("data", "train", i, where), message)
        named[source.label] = i
