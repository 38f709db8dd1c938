"""Latent CE profiles: the effect of do(Z_j = v) on each of the k concept channels of the autoencoder.

The prefix activation g(x) and the code Z = E(g(x)) are computed once per input; the k
interventions are then decoded and finished through the suffix h in batched chunks.
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import CemapError
from ..models.classifier import Classifier
from .autoencoder import FittedAutoencoder
from .batching import as_model_input, autocast, chunks, prefers_channels_last
from .planning import memory_cap, on_gpu
from .effects import class_effect, expected_effect, resolve_targets
from .explainer import LayerExplainer
from .masks import apply_masks, fill_images

VALUES = ("zero", "mean")
EFFECTS = ("ece", "class")
SUFFIX_BUDGET = 1 << 24  # cut-activation values per suffix pass (64 MB in fp32)
GPU_SUFFIX_ROWS = 1024  # at most this many interventions per suffix pass on a GPU
SUFFIX_ACTIVATIONS = 40  # the suffix's peak activations per row, in multiples of the cut activation (DenseNet-121: ~25)


class LatentCE(LayerExplainer):
    """``attribute(images)`` -> B x k latent CE profile (ECE by default, class CE with effect='class'): a layer
    attribution to the k concept channels Z_j of the autoencoder at ``fitted.layer``.

    Args:
        classifier: the model explained.
        fitted: its latent autoencoder (``fit_autoencoder``).
        value: what do(Z_j = v) sets the channel to: "zero", "mean" (the channel's mean on the training images) or a
        number.
        chunk_size: interventions per suffix pass (default: sized by the cut activation).
        precision: "fp32" or "bf16" (autocast).
    """

    def __init__(
        self,
        classifier: Classifier,
        fitted: FittedAutoencoder,
        value: str | float = "zero",
        chunk_size: int | None = None,
        precision: str = "fp32",
    ) -> None:
        if not isinstance(value, (int, float)) and value not in VALUES:
            raise CemapError(
                f"unknown intervention value {value!r}", "use 'zero', 'mean' (the channel's dataset mean) or a number"
            )
        super().__init__(classifier)
        self.fitted = fitted
        self.layer = fitted.layer
        self.value = value
        self.chunk_size = chunk_size  # None: sized by the cut activation (see _chunk)
        self.precision = precision
        self.channels_last = prefers_channels_last(classifier.input_shape)

    @property
    def k(self) -> int:
        return self.fitted.autoencoder.code_channels

    def _values(self) -> torch.Tensor:
        ae = self.fitted.autoencoder
        if self.value == "mean":
            return ae.code_mean
        return torch.full((self.k,), 0.0 if self.value == "zero" else float(self.value))

    def intervened_probs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(p: B x K from f_AE without intervention, p_do: B x k x K, one row per do(Z_j = v)).

        The prefix runs once per image; the suffix runs on k + 1 codes per image (unchanged, then each
        do(Z_j = v)), all images' rows batched together in chunks.
        """
        split, ae, clf = self.fitted.split, self.fitted.autoencoder, self.classifier
        act, extras = split.activation(as_model_input(images, self.channels_last))
        z, _ = ae.encode(act)
        b, k = z.shape[:2]
        chosen = torch.cat([torch.zeros(1, k, dtype=torch.bool), torch.eye(k, dtype=torch.bool)]).to(z.device)[
            None, :, :, None, None
        ]
        z_do = torch.where(chosen, self._values().to(z)[None, None, :, None, None], z[:, None]).reshape(
            b * (k + 1), *z.shape[1:]
        )
        owner = torch.arange(b, device=z.device).repeat_interleave(k + 1)
        size = self._chunk(act)
        act_like = act[:1].expand(size, *act.shape[1:])
        out = []
        for s in chunks(b * (k + 1), size):
            n = s.stop - s.start
            recon = ae.decode(as_model_input(z_do[s], self.channels_last), act_like[:n])[0]
            rows = owner[s]
            extra = tuple(e[rows] if torch.is_tensor(e) and e.dim() > 0 and e.shape[0] == b else e for e in extras)
            out.append(clf.probabilities(split.finish(recon, extra).float()))
        probs = torch.cat(out).reshape(b, k + 1, -1)
        return probs[:, 0], probs[:, 1:]

    def _chunk(self, act: torch.Tensor) -> int:
        """Interventions per suffix pass, sized by the cut activation rather than the image since only the suffix
        runs in chunks (DenseNet-121 after denseblock2: 40 instead of 8, 12% faster), between 8 and 128 on the CPU; on
        a GPU
        up to ``GPU_SUFFIX_ROWS``, if the suffix's activations (taken as ``SUFFIX_ACTIVATIONS`` times the cut's) fit."""
        if self.chunk_size:
            return self.chunk_size
        if on_gpu(
            act.device
        ):  # a GPU pass is launch-bound below hundreds of rows: as many as a share of free memory holds
            return int(
                min(GPU_SUFFIX_ROWS, memory_cap(SUFFIX_ACTIVATIONS * act[0].numel() * act.element_size(), act.device))
            )
        return int(min(128, max(8, SUFFIX_BUDGET // max(act[0].numel(), 1))))

    def attribute(
        self,
        images: torch.Tensor,
        target: int | torch.Tensor | None = None,
        effect: str = "ece",
        differentiable: bool = False,
    ) -> torch.Tensor:
        """Latent CE profile: the effect of each do(Z_j = v) on the prediction.

        Args:
            images: B x C x H x W in [0, 1].
            target: with ``effect='class'``, the class / finding whose probability drop is measured (None: the
                model's choice). ECE sums over every class, so a target with ``effect='ece'`` is refused, never ignored.
            effect: "ece" (expected causal effect) or "class" (class CE of ``target``).
            differentiable: keep the graph (for adaptive attacks).
        Returns:
            B x k effects, higher = the channel matters more.
        """
        if effect not in EFFECTS:
            raise CemapError(f"unknown effect {effect!r}", f"use one of {', '.join(EFFECTS)}")
        if target is not None and effect == "ece":
            raise CemapError(
                "a target was given, but the expected causal effect (ECE) sums over every class",
                "pass effect='class' to measure the target's own probability drop",
            )
        images = self.classifier.check_images(images)
        home = images.device  # computed where the classifier runs, returned where the images came from
        grad_ctx = contextlib.nullcontext() if differentiable else torch.inference_mode()
        with grad_ctx, autocast(self.precision, self.classifier.device):
            p, p_do = self.intervened_probs(images.to(self.classifier.device))
            if effect == "ece":
                return expected_effect(p, p_do, self.classifier.head).float().to(home)
            targets = resolve_targets(p, None if target is None else torch.as_tensor(target).to(p.device))
            return class_effect(p, p_do, targets).float().to(home)

    def attribute_masked(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        fill: str | float = "zero",
        target: int | torch.Tensor | None = None,
        effect: str = "ece",
    ) -> torch.Tensor:
        """Latent CE profile of each image with its region masked (``masks``: B x H x W) - the notebooks' overlap
        experiment."""
        images = self.classifier.check_images(images)
        if masks.shape != (images.shape[0], *images.shape[2:]):
            raise CemapError(
                f"masks of shape {tuple(masks.shape)} do not match images {tuple(images.shape)}",
                "pass one H x W mask per image",
            )
        fills = fill_images(images, fill)
        masked = torch.stack([apply_masks(img, f, m[None].bool())[0] for img, f, m in zip(images, fills, masks)])
        return self.attribute(masked, target=target, effect=effect)
