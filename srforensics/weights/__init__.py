"""Weight files: name -> URL, SHA-256, licence; the cache; import, fetch, verify; safe loading.

A weight file is used only when its SHA-256 matches the one registered for its
name (or given in a model spec). Files come into the cache by ``fetch`` (where
there is network) or ``import`` (air-gapped), both verifying the hash. Loading
never unpickles arbitrary objects: ``torch.load(..., weights_only=True)`` or
safetensors; a pickle that needs more is refused unless the user trusts it for
one run (``--trust-weights``, see :func:`weights_policy`). Every file loaded is
logged, with its SHA-256 and how it was read, for the run's manifest.

Files that another library unpickles itself (pyiqa and torchvision call
``torch.load(..., weights_only=False)``) are first loaded here with
``weights_only=True``: a pickle that loads that way refers to nothing but tensors
and plain containers, so the library's full unpickling of the same bytes runs no
other code. That proof is what makes a file usable whose full SHA-256 is not
published (``verify="prefix"``: an 8-hex prefix is found by brute force in
minutes, so it says nothing about who made the file). A file that fails it is
refused unless the user passes ``--trust-weights``. The check and the library's
read are moments apart: someone who can write to the cache folder in between can
also replace this package, and is outside what the check defends against.

The cache folder is ``$SRFORENSICS_CACHE/weights`` when that variable is set,
else ``$XDG_CACHE_HOME/srforensics/weights`` (``~/.cache/srforensics/weights``).
"""

from srforensics.weights import catalogue  # noqa: F401  (registers the published files)
from srforensics.weights.files import *  # noqa: F403
from srforensics.weights.files import _REGISTRY  # noqa: F401  (the registry itself)
from srforensics.weights.loading import *  # noqa: F403
from srforensics.weights.policy import *  # noqa: F403
