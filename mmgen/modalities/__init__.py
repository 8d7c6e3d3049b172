"""The built-in modalities: exactly what `mmgen new-modality NAME --project .` generates from
``specs/NAME.yaml`` (``tests/test_builtin_modalities.py`` regenerates them and compares).
Importing this package registers them; a project's own modality of the same name takes over.
"""

import mmgen.modalities.audio  # noqa: F401 (registers the modality)
import mmgen.modalities.document  # noqa: F401 (registers the modality)
import mmgen.modalities.ecg  # noqa: F401 (registers the modality)
import mmgen.modalities.image  # noqa: F401 (registers the modality)
import mmgen.modalities.video  # noqa: F401 (registers the modality)
# mmgen: modality imports above this line (`mmgen new-modality` adds them here)
