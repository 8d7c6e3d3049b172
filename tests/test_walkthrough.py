"""MultiMeditron's "adding a new modality" walkthrough (docs/source/guides/add_modality.rst) on
mmgen: the loader, config, processor and modality below use exactly the names, signatures and
calls the walkthrough publishes (``ImageConfig`` with ``max_batch_size: int = 32`` as in its
earlier version); only the imports point at mmgen. A tiny CLIP saved to a temp dir stands in for
``openai/clip-vit-large-patch14``.
"""

import io
import shutil
from typing import Any, Dict, List

import PIL
import PIL.Image
import pytest
import torch
from helpers.model_batches import packed_batch
from helpers.tiny_models import IMAGE_PATCHES, LLM_HIDDEN, random_image, save_tiny_clip, tiny_llm
from transformers import AutoConfig, AutoImageProcessor, AutoModel

from mmgen import (
    MODALITY_VALUE_KEY,
    NUM_EMBEDDINGS_KEY,
    AutoModality,
    AutoModalityLoader,
    BaseModality,
    BaseModalityConfig,
    BaseModalityLoader,
    BaseModalityProcessor,
    MLPProjector,
    MultimodalModel,
)

# the walkthrough registers its own "raw-image" loader; other test modules keep the built-in one
_LOADERS_BEFORE = dict(AutoModalityLoader._registry)

# --- the walkthrough's four classes (only the imports above differ from the published text) ---


@AutoModalityLoader.register("raw-image")
class RawImageLoader(BaseModalityLoader):
    def __init__(self):
        super().__init__()

    def load(self, sample: Dict[str, Any]) -> PIL.Image.Image:
        image_bytes = sample[MODALITY_VALUE_KEY]["bytes"]
        image = PIL.Image.open(io.BytesIO(image_bytes)).convert("RGB")
        return image


class ImageConfig(BaseModalityConfig):
    def __init__(
        self,
        hidden_size: int = 4096,
        clip_name: str = "openai/clip-vit-large-patch14",
        projection_type: str = "mlp",
        max_batch_size: int = 32,
        **kwargs,
    ):
        super().__init__(
            max_batch_size=max_batch_size,
            modality_type="image",
            hidden_size=hidden_size,
            kwargs=kwargs,
        )

        self.clip_name = clip_name
        self.projection_type = projection_type


class ImageProcessor(BaseModalityProcessor):
    def __init__(self, config):
        super().__init__(config)
        assert config.clip_name is not None, "clip_name must be specified in the config"

        self.image_processor = AutoImageProcessor.from_pretrained(config.clip_name)

        feature_extractor_config = AutoConfig.from_pretrained(
            config.clip_name, trust_remote_code=True
        )
        self._num_patches_per_entry = (
            feature_extractor_config.vision_config.image_size
            // feature_extractor_config.vision_config.patch_size
        ) ** 2

    def process(self, modality: Dict[str, Any]) -> Dict[str, Any]:
        processed_modality = modality.copy()
        image = modality[MODALITY_VALUE_KEY]

        processed_modality[MODALITY_VALUE_KEY] = self.image_processor(
            images=image, return_tensors="pt"
        )["pixel_values"][0]
        processed_modality[NUM_EMBEDDINGS_KEY] = self._num_patches_per_entry

        return processed_modality


@AutoModality.register("meditron_clip")
class ImageModality(BaseModality):
    config_class = ImageConfig
    preprocessor_class = ImageProcessor

    def __init__(self, config: ImageConfig):
        super().__init__(config)

        self.vision_tower_name = config.clip_name
        assert self.vision_tower_name is not None, "vision_tower_name must be specified"

        self.feature_extractor = AutoModel.from_pretrained(
            self.vision_tower_name, trust_remote_code=True
        )
        self.embedding_size = self.feature_extractor.vision_embed_dim
        self._num_patches_per_entry = (
            self.feature_extractor.vision_model.config.image_size
            // self.feature_extractor.vision_model.config.patch_size
        ) ** 2

        self.projector = MLPProjector(self.embedding_size, config.hidden_size, dtype=self.dtype)

    def forward(self, inputs: List[torch.Tensor]) -> torch.FloatTensor:
        inputs = torch.stack(inputs, dim=0)
        inputs = inputs.to(self.feature_extractor.device)
        image_features = self.feature_extractor.vision_model(inputs).last_hidden_state[:, 1:, :]

        projected = self.projector(image_features)

        return projected

    def freeze_modality_embedder(self):
        for parameters in self.feature_extractor.parameters():
            parameters.requires_grad = False

    def unfreeze_modality_embedder(self):
        for parameters in self.feature_extractor.parameters():
            parameters.requires_grad = True

    def unfreeze_projection(self):
        for parameters in self.projector.parameters():
            parameters.requires_grad = True


# --- using it through mmgen ---

_WALKTHROUGH_LOADERS = dict(AutoModalityLoader._registry)


def _restore_loaders(registry: dict) -> None:
    AutoModalityLoader._registry.clear()
    AutoModalityLoader._registry.update(registry)


_restore_loaders(_LOADERS_BEFORE)


@pytest.fixture(autouse=True)
def walkthrough_loaders():
    saved = dict(AutoModalityLoader._registry)
    AutoModalityLoader._registry.update(_WALKTHROUGH_LOADERS)
    yield
    _restore_loaders(saved)


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    random_image(seed).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def clip_dir(tmp_path):
    return save_tiny_clip(tmp_path / "clip")


def _item(loader, processor, seed):
    entry = {"type": "image", "value": {"bytes": _png(seed)}}
    processed = processor.process({**entry, MODALITY_VALUE_KEY: loader(entry)})
    return ("image", processed[MODALITY_VALUE_KEY], processed[NUM_EMBEDDINGS_KEY])


def test_walkthrough_modality_trains_and_round_trips(tmp_path, clip_dir):
    loader = AutoModalityLoader.from_name("raw-image")
    assert isinstance(loader, RawImageLoader)
    config = ImageConfig(hidden_size=LLM_HIDDEN, clip_name=str(clip_dir), max_batch_size=2)
    assert (config.modality_type, config.max_batch_size) == ("image", 2)
    modality = AutoModality.from_config(config)
    assert isinstance(modality, ImageModality)
    processor = modality.preprocessor_class(config)

    model = MultimodalModel(language_model=tiny_llm(), modalities={"image": modality})
    samples = [[5, _item(loader, processor, s), 6, 7] for s in range(3)]
    samples[2].insert(2, _item(loader, processor, 9))  # two images in one sample
    batch = packed_batch(samples, model.placeholder_ids)
    assert batch["modalities"]["image"]["num_embeddings"] == [IMAGE_PATCHES] * 4

    # alignment stage: walkthrough freeze helpers and the base class's freeze_projection
    model.set_trainable("alignment")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("modalities.image.projector.") for n in trainable)
    model.train()
    loss = model(**batch).loss
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter -= 0.1 * parameter.grad
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        assert model(**batch).loss < loss

    model.save_pretrained(tmp_path / "saved")
    shutil.rmtree(clip_dir)  # the checkpoint must not need the original CLIP directory
    loaded = MultimodalModel.from_pretrained(tmp_path / "saved")
    assert isinstance(loaded.modalities["image"], ImageModality)
    reloaded_processor = ImageProcessor(loaded.modalities["image"].config)
    again = [[5, _item(loader, reloaded_processor, s), 6, 7] for s in range(3)]
    again[2].insert(2, _item(loader, reloaded_processor, 9))
    with torch.no_grad():
        logits = loaded(**packed_batch(again, loaded.placeholder_ids)).logits
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)


def test_walkthrough_modality_loads_alone(tmp_path, clip_dir):
    modality = ImageModality(ImageConfig(hidden_size=LLM_HIDDEN, clip_name=str(clip_dir)))
    modality.save_pretrained(tmp_path / "modality")
    shutil.rmtree(clip_dir)
    loaded = AutoModel.from_pretrained(tmp_path / "modality")
    assert isinstance(loaded, ImageModality)
    for (name, a), (_, b) in zip(
        modality.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_saved_modalities_load_in_two_threads_at_once(tmp_path, clip_dir):
    """Loading patches nothing process-wide: two threads load two saved modalities (each
    building its CLIP with transformers' own from_pretrained) and each gets its own weights."""
    from concurrent.futures import ThreadPoolExecutor

    saved = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        modality = ImageModality(ImageConfig(hidden_size=LLM_HIDDEN, clip_name=str(clip_dir)))
        with torch.no_grad():  # as if trained: the two differ everywhere, the CLIP included
            for parameter in modality.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        modality.save_pretrained(tmp_path / f"modality-{seed}")
        saved[tmp_path / f"modality-{seed}"] = {
            k: v.clone() for k, v in modality.state_dict().items()
        }
    shutil.rmtree(clip_dir)
    paths = list(saved) * 3
    with ThreadPoolExecutor(max_workers=2) as pool:
        loaded = list(pool.map(AutoModel.from_pretrained, paths))
    for path, modality in zip(paths, loaded, strict=True):
        assert isinstance(modality, ImageModality)
        state = modality.state_dict()
        for name, value in saved[path].items():
            torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)
