"""nnU-Net trainer that synthesises a new contrast for every training batch, as SynthSeg trains.

nnU-Net keeps its planning, preprocessing, patch sampling, spatial augmentation, deep supervision,
validation and checkpoints. Only `train_step` changes: before the batch reaches the network, the
image channels of (a fraction of) its samples are replaced by a synthetic image drawn on the
training device from that sample's *label patch*, which nnU-Net's data loader has already cropped
and spatially augmented (rotation, scaling, mirroring). So no synthetic volume is ever stored and
every iteration sees new contrasts. Validation batches are never touched: the EMA pseudo-Dice
nnU-Net reports is measured on the real (preprocessed) images of the validation cases.

Per sample and per image channel (T1w, T2w... each draws its own contrast on the same labels):

1. nnU-Net's consecutive label index -> FreeSurfer code (`freesurfer_labels` of dataset.json, as
   written by `RawDatasetWriter`) -> intensity class (`IntensityPriors.classes`); codes of one
   class share one Gaussian, whose mean and sd are drawn from that class's priors for the channel
   (`IntensityPriors.draw`, SynthSeg's uniform defaults unless configured).
2. Gaussian-mixture image with texture (`synthesis.gmm.FastGaussianMixtureTransform`). The label
   patch only holds segmentation targets, so everything outside the brain is one background class
   (index 0): with probability `skull_strip_probability` it is black (a skull-stripped look), else
   it draws its own Gaussian like any class (SynthSeg samples its background as well).
3. cornucopia's intensity corruption (`cornucopia.IntensityTransform`: bias field, gamma, motion
   blur, thick-slice / isotropic low resolution with noise, quantile rescale), with the bounds of
   `SynthesisConfig` and the low-resolution factors set from the plan's voxel spacing as in
   `synthesis.generator` (`set_resolution`). These act on the patch, not the whole head, so
   a bias field's 2-7 nodes span the patch; its spline order is `field_order` (1: linear).
4. z-score over the patch (zero mean, unit sd), like nnU-Net's ZScoreNormalization of real data.

Preview: at the first step of epoch 0, of every `preview_every` epochs and of the last epoch,
the batch as the network sees it (first samples, every channel, three orthogonal mid-slices with
the target's outlines) is written to `synthesis_preview.png` in the fold's output folder, so a
user can look at the synthesis while training runs; the group report shows the last one.

Configuration: the training job's settings (`runner.TrainJob.settings`, handed over by
`apply_settings`, the one place the trainer reads them) may carry `"synthesis": {"config":
{SynthesisConfig fields}, "priors": IntensityPriors JSON or {"pooled": ..., "by_age": {bin: ...}},
"case_age_bins": {case id: bin}}` (all optional; a sample is synthesised with its case's age-bin
priors where both are known, else with the pooled ones). Without it: `SynthesisConfig()` defaults
and the priors it names (`priors: estimated` needs the "priors" entry, else it falls back to the
uniform defaults). `synthetic_fraction` (default 1.0) is the chance that a sample is replaced;
the others keep their real image (with nnU-Net's own intensity augmentation).

Supported: label-based training (one integer label map per sample), 2D or 3D patches, deep
supervision on or off, an ignore label (its voxels get a Gaussian of their own), any number of
image channels. Not supported: region-based training (targets are binary region maps, not
labels; refused at start) and cascades (the previous stage's one-hot channels are kept as they
are: only the first `len(channel_names)` channels are replaced). If the plans normalise within a
foreground mask (`use_mask_for_norm`), synthetic patches are still z-scored over the whole patch.

This file is loaded by nnU-Net's trainer lookup as a top-level module (the folder is on
`nnUNet_extTrainer`): absolute imports only; the base trainer is imported through the package.
"""
import os
import random
from dataclasses import fields

import numpy as np
import torch

from bibsnet_trainer.nnunet.trainers import nnUNetTrainerBibsnet as _base
from bibsnet_trainer.synthesis.generator import configured_priors, set_resolution
from bibsnet_trainer.synthesis.smoothing import lean_cornucopia_smoothing

PREVIEW_FILE = "synthesis_preview.png"


class nnUNetTrainerBibsnetOnTheFly(_base.nnUNetTrainerBibsnet):
    # spline order of the bias and g-factor fields: linear is ~3x faster than cornucopia's cubic
    # default on the CPU (whole intensity corruption of a 32^3 patch: ~13 ms vs ~42 ms, 1 thread)
    field_order = 1
    preview_every = 50      # epochs between previews of the synthesised batch (and epoch 0, the last)
    preview_samples = 3     # samples of the batch shown

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        from bibsnet_trainer.labels import LabelTable

        if self.label_manager.has_regions:
            raise NotImplementedError(f"{type(self).__name__} synthesises images from label maps; "
                                      "region-based training is not supported")
        self.synthetic_fraction = 1.0
        self._configure_synthesis({})
        self.channel_names = [dataset_json["channel_names"][str(i)]
                              for i in range(len(dataset_json["channel_names"]))]
        # consecutive index -> FreeSurfer code; indices without one (e.g. an ignore label) get a
        # negative code of their own, which the priors treat as a class of its own
        n_indices = int(max(self.label_manager.all_labels)) + 1
        if self.label_manager.has_ignore_label:
            n_indices = max(n_indices, int(self.label_manager.ignore_label) + 1)
        codes = [-1 - i for i in range(n_indices)]
        if "freesurfer_labels" in dataset_json:
            for index, code in enumerate(LabelTable.from_json(dataset_json["freesurfer_labels"]).codes):
                if index < n_indices:
                    codes[index] = code
        codes[0] = 0  # nnU-Net's background is always index 0
        self.index_codes = np.asarray(codes, dtype=np.int64)
        self._build_synthesis()
        self.last_replaced: list[bool] = []   # per sample of the last batch: synthetic or not
        self._previewed_epoch: int | None = None

    def apply_settings(self, settings: dict) -> None:
        """The job's settings: the base trainer's, plus `synthetic_fraction` and `synthesis`
        (`{"config": SynthesisConfig fields, "priors": ..., "case_age_bins": ...}`)."""
        super().apply_settings(settings)
        self.synthetic_fraction = float(settings.get("synthetic_fraction", 1.0))
        self._configure_synthesis(settings.get("synthesis") or {})
        self._build_synthesis()

    def _configure_synthesis(self, settings: dict) -> None:
        from bibsnet_trainer.config import SynthesisConfig
        from bibsnet_trainer.synthesis.priors import IntensityPriors

        known = {f.name for f in fields(SynthesisConfig)}
        self.synthesis_config = SynthesisConfig(**{k: v for k, v in (settings.get("config") or {}).items()
                                                   if k in known})
        self.priors_by_bin: dict[str, IntensityPriors] = {}
        if settings.get("priors"):
            data = settings["priors"]
            self.priors = IntensityPriors.from_json(data.get("pooled", data))
            self.priors_by_bin = {b: IntensityPriors.from_json(p) for b, p in data.get("by_age", {}).items()}
        else:
            self.priors = configured_priors(self.synthesis_config)
        self.case_age_bins: dict[str, str] = dict(settings.get("case_age_bins") or {})

    def _build_synthesis(self) -> None:
        """The texture GMM and cornucopia's intensity corruption (set `intensity_augmentation`
        to None to get the bare Gaussian mixture)."""
        import cornucopia as cc

        from bibsnet_trainer.synthesis.gmm import FastGaussianMixtureTransform

        config = self.synthesis_config
        # texture_bins 0 (cornucopia's per-class loop offline) means one texture width here
        self.gmm = FastGaussianMixtureTransform(fwhm=config.gmm_fwhm, n_bins=max(int(config.texture_bins), 1))
        self.intensity_augmentation = cc.IntensityTransform(
            bias_strength=config.bias_strength, gamma=config.gamma, motion_fwhm=config.motion_fwhm,
            resolution=2.0, snr=config.snr, order=self.field_order)
        spacing = [float(s) for s in self.configuration_manager.spacing]
        set_resolution(self.intensity_augmentation, config, float(np.mean(spacing)))

    def priors_for(self, case: str | None):
        """The intensity priors of a case's age bin, else the pooled ones."""
        return self.priors_by_bin.get(self.case_age_bins.get(case or ""), self.priors)

    def synthesize_sample(self, labels: torch.Tensor, channel: str, priors=None) -> torch.Tensor:
        """One synthetic image (same shape as `labels`, float32, zero mean, unit sd) from a map
        of nnU-Net label indices on the training device (-1, nnU-Net's outside-the-image
        padding, counts as background), with `priors` (default: the pooled priors)."""
        labels = labels.long().clamp_min(0)
        device = labels.device
        priors = priors or self.priors
        # torch.device as a context: cornucopia 0.5.1 builds some tensors on the default device
        with torch.no_grad(), device, lean_cornucopia_smoothing():
            self.gmm.class_params = priors.draw(channel, self.index_codes, device=device)
            black = random.random() < self.synthesis_config.skull_strip_probability
            self.gmm.background = 0 if black else None
            image = self.gmm(labels[None])
            if self.intensity_augmentation is not None:
                image = self.intensity_augmentation(image)
            image = image[0].float()
            image = (image - image.mean()) / image.std().clamp_min(1e-6)
        return image

    def synthesize_batch(self, data: torch.Tensor, target, keys=None) -> torch.Tensor:
        """`data` with the image channels of each sample replaced, with probability
        `synthetic_fraction`, by a synthetic contrast drawn from the sample's label patch
        (`target`, or its first, full-resolution, entry under deep supervision), with the priors
        of the sample's age bin (`keys`: the batch's case ids) where they are known."""
        if self.synthetic_fraction <= 0:
            self.last_replaced = [False] * data.shape[0]
            return data
        labels = _full_resolution(target).to(self.device, non_blocking=True)
        data = data.to(self.device, non_blocking=True).clone()
        n_images = min(len(self.channel_names), data.shape[1])
        self.last_replaced = []
        for b in range(data.shape[0]):
            replace = self.synthetic_fraction >= 1 or random.random() < self.synthetic_fraction
            self.last_replaced.append(replace)
            if not replace:
                continue
            priors = self.priors_for(keys[b] if keys is not None else None)
            for c in range(n_images):
                data[b, c] = self.synthesize_sample(labels[b, 0], self.channel_names[c], priors).to(data.dtype)
        return data

    def train_step(self, batch: dict) -> dict:
        batch = dict(batch)
        batch["data"] = self.synthesize_batch(batch["data"], batch["target"], batch.get("keys"))
        if self._preview_due():
            self._previewed_epoch = self.current_epoch
            try:
                self.write_preview(batch["data"], batch["target"], os.path.join(self.output_folder, PREVIEW_FILE))
            except Exception as exc:  # a figure must never end hours of training
                self.print_to_log_file(f"synthesis preview not written: {type(exc).__name__}: {exc}")
        return super().train_step(batch)

    def _preview_due(self) -> bool:
        epoch = self.current_epoch
        return (self.local_rank == 0 and self._previewed_epoch != epoch
                and (epoch % self.preview_every == 0 or epoch == self.num_epochs - 1))

    def write_preview(self, data: torch.Tensor, target, path: str) -> str:
        """A PNG of the first samples of a batch as the network gets it, every image channel."""
        from bibsnet_trainer.synthesis.preview import write_preview

        labels = _full_resolution(target)
        samples = []
        for b in range(min(self.preview_samples, data.shape[0])):
            kind = "synthetic" if b < len(self.last_replaced) and self.last_replaced[b] else "real"
            # consecutive indices -> FreeSurfer codes, as the preview colours them (uncoded indices: background)
            label_patch = np.maximum(self.index_codes[labels[b, 0].detach().cpu().numpy().astype(np.int64)], 0)
            for c, channel in enumerate(self.channel_names[:data.shape[1]]):
                samples.append((f"patch {b} ({kind}), {channel}", data[b, c].detach().float().cpu().numpy(),
                                label_patch))
        title = (f"SYNTHETIC on-the-fly training patches, epoch {self.current_epoch}: what the network is fed\n"
                 "(z-scored, after nnU-Net's spatial augmentation; outlines: target labels)")
        write_preview(path, samples, title=title, ras=False)
        self.print_to_log_file(f"synthesis preview written: {path}", also_print_to_console=False)
        return path

    def on_train_start(self):
        super().on_train_start()
        by_age = f" and by age bin {sorted(self.priors_by_bin)} for {len(self.case_age_bins)} cases" \
            if self.priors_by_bin else ""
        self.print_to_log_file(
            f"on-the-fly synthesis: fraction {self.synthetic_fraction}, priors: {self.priors.source}{by_age}, "
            f"config: {self.synthesis_config.as_dict()}", also_print_to_console=False)


def _full_resolution(target):
    """The full-resolution label batch: the target itself, or its first entry under deep supervision."""
    return target[0] if isinstance(target, (list, tuple)) else target
