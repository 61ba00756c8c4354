"""EchoSynth: labelled synthetic echocardiography in 3D Slicer.

Pick a segmentation (or labelmap volume), choose a generator, press Generate: new echo volumes appear in
the input's study with its geometry. "Adapt to my images" fits a model in the look of the user's scanner
from unlabelled images of it, and installs it among the generators. The work runs in a separate
PythonSlicer process (files in, files out), so the panel stays responsive and Cancel kills it. Scene
code lives in ``EchoSynthScene`` (MRML only, tested outside Slicer); this file holds the Slicer module
classes. It stays light at load time: the library, numpy and torch are imported on first use. It parses
on Python 3.9, so an older Slicer loads it far enough to say which version EchoSynth needs
(``MINIMUM_SLICER_VERSION``).
"""

import logging
import os
import sys
import time
from typing import Annotated, Union

import qt
import slicer
import vtk
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:  # Slicer's translation functions (the module template's); an old Slicer without them shows English
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:

    def _(text):
        return text

    def translate(context, text):
        return text


def _addSourceCheckoutToPath():
    """Run from a source checkout ("Additional module paths" -> EchoSynth/), Slicer puts only this folder on
    sys.path, and EchoSynthLib sits one folder up; an installed extension has it beside this file."""
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.dirname(here)
    beside = os.path.isdir(os.path.join(here, "EchoSynthLib"))
    found = os.path.isfile(os.path.join(checkout, "EchoSynthLib", "__init__.py"))
    if not beside and found and checkout not in sys.path:
        sys.path.append(checkout)


_addSourceCheckoutToPath()

SAMPLERS = ["dpm++sde", "dpm++", "ddim", "ddpm", "rflow"]
# From a label map; new cases (image + labels) from nothing; or an echo volume given another scanner's look.
MODES = ["synthesize", "generate", "translate"]
DEVICES = ["auto", "cpu", "gpu"]
PLANES = ["ij", "kj", "volume"]  # the library's --plane choices; "volume": every ij plane (a test holds them)
LOOKS = ["none", "family", "all"]  # EchoSynthLib.inference.options' "looks" (a test holds them equal)
ACQUISITIONS = ["same", "varied"]  # EchoSynthLib.inference.options.ACQUISITIONS (a test holds them equal)
POLL_INTERVAL_MS = 100
DOCUMENTATION_URL = "https://github.com/echosynth/SlicerEchoSynth#readme"
# Slicer 5.10 is the first with Python 3.12 (EchoSynthLib needs Python >= 3.10); slicer.packaging (pip_ensure)
# arrives in 5.11, and 5.10 installs through slicer.util.pip_install.
MINIMUM_SLICER_VERSION = (5, 10)


def slicerVersionProblem(app):
    """Why this Slicer cannot run EchoSynth (a sentence), or None when its version is recent enough."""
    version = (int(app.majorVersion), int(app.minorVersion))
    if version >= MINIMUM_SLICER_VERSION:
        return None
    needed = ".".join(str(v) for v in MINIMUM_SLICER_VERSION)
    return _(
        "EchoSynth needs 3D Slicer {needed} or later; this is Slicer {this}. "
        "Install Slicer {needed} or a newer release to use EchoSynth."
    ).format(needed=needed, this=f"{version[0]}.{version[1]}")


class EchoSynth(ScriptedLoadableModule):
    """Module metadata."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("EchoSynth")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Ultrasound")]
        self.parent.dependencies = []
        self.parent.contributors = ["EchoSynth developers"]
        self.parent.helpText = _(
            "Turn label maps (LV cavity, myocardium, left atrium, sector) into synthetic echocardiography "
            "with the training-free simulator or a trained model. Outputs keep the input's geometry and go "
            "into its study, under its parent transform; a sequence input gives output sequences in the same "
            "browser. Models not installed yet are downloaded on first use, after you accept their licence. "
            "Adapt to my images fits a model in the look of your scanner from unlabelled images of it. "
            'See the <a href="{url}">documentation</a>.'
        ).format(url=DOCUMENTATION_URL)
        self.parent.acknowledgementText = _("Uses MONAI, PyTorch, SimpleITK and slicerio.")
        problem = slicerVersionProblem(slicer.app)
        if problem:
            logging.error(problem)
            self.parent.helpText = problem + "\n\n" + self.parent.helpText


@parameterNodeWrapper
class EchoSynthParameterNode:
    """The panel's state; every field but ``generator`` is bound to a widget through SlicerParameterName."""

    # None is a member: the wrapper writes None as the default, and a Union without it cannot hold None.
    inputNode: Union[slicer.vtkMRMLSegmentationNode, slicer.vtkMRMLLabelMapVolumeNode, None]  # noqa: UP007
    referenceVolume: slicer.vtkMRMLScalarVolumeNode
    translateVolume: slicer.vtkMRMLScalarVolumeNode
    useSegmenter: bool = False
    generator: str = "simulator"
    mode: Annotated[str, Choice(MODES)] = "synthesize"
    # The sampling parameters below mirror EchoSynthLib.inference.options.SAMPLING_OPTIONS (names, defaults,
    # ranges, choices; a test holds them equal). They are spelled out because Slicer's wrapper reads class
    # annotations when this file loads, before the library may be imported (an old Slicer's Python 3.9).
    plane: Annotated[str, Choice(PLANES)] = "ij"
    sliceIndex: Annotated[int, WithinRange(-1, 10000)] = -1
    samples: Annotated[int, WithinRange(1, 1000)] = 1
    sampler: Annotated[str, Choice(SAMPLERS)] = "dpm++sde"
    steps: Annotated[int, WithinRange(1, 1000)] = 25
    guidanceScale: Annotated[float, WithinRange(0.0, 20.0)] = 1.0
    strength: Annotated[float, WithinRange(0.0, 1.0)] = 0.0  # 0: the model's own start strength
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    device: Annotated[str, Choice(DEVICES)] = "auto"
    augment: Annotated[int, WithinRange(0, 100)] = 0
    looks: Annotated[str, Choice(LOOKS)] = "none"
    acquisition: Annotated[str, Choice(ACQUISITIONS)] = "same"


def optionsFromParameters(parameters):
    """The synthesis options (EchoSynthScene.synthesis.SynthesisOptions keywords) of a parameter node; the
    sampling options come from their one declaration (EchoSynthLib.inference.options). In generate mode
    ``samples`` is the number of cases and there is no augmentation."""
    from EchoSynthLib.inference.options import SAMPLING_OPTIONS

    augment = parameters.augment if parameters.mode == "synthesize" else 0
    options = {
        "generator": parameters.generator,
        "n": parameters.samples,
        "seed": parameters.seed,
        "augment": augment,
        "acquisition": parameters.acquisition if augment else "same",  # new anatomies' acquisition
        "device": parameters.device,
    }
    options.update({o.name: o.from_panel(getattr(parameters, o.panel)) for o in SAMPLING_OPTIONS})
    return options


class EchoSynthWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: inputs, generator, options, Generate / Cancel with progress, and the model manager."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None
        self._timer = None
        self._adaptRun = None  # an "Adapt to my images" run, beside any Generate run
        self._adaptTimer = None
        self._connecting = False  # True while connectGui fills and sets the bound widgets

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        problem = slicerVersionProblem(slicer.app)
        if problem:  # the panel would need the library, which this Slicer's Python cannot import
            label = qt.QLabel(problem)
            label.wordWrap = True
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/EchoSynth.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = EchoSynthLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self.onPoll)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.generateButton.connect("clicked(bool)", self.onGenerateButton)
        self.ui.generatorSelector.connect("currentIndexChanged(int)", self.onGeneratorChanged)
        self.ui.modeSelector.connect("currentIndexChanged(int)", self.onModeChanged)
        self.ui.browseModelButton.connect("clicked(bool)", self.onBrowseModel)
        self.ui.downloadModelButton.connect("clicked(bool)", self.onDownloadModel)
        self.ui.addModelFolderButton.connect("clicked(bool)", self.onAddModelFolder)
        self.ui.installFileButton.connect("clicked(bool)", self.onInstallFile)
        self.ui.openCacheButton.connect("clicked(bool)", self.onOpenCache)
        self.ui.clearCacheButton.connect("clicked(bool)", self.onClearCache)
        self._adaptTimer = qt.QTimer()
        self._adaptTimer.setInterval(POLL_INTERVAL_MS)
        self._adaptTimer.timeout.connect(self.onAdaptPoll)
        self.ui.adaptButton.connect("clicked(bool)", self.onAdaptButton)
        self.ui.adaptVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._checkCanAdapt)
        self.ui.adaptBaseSelector.connect("currentIndexChanged(int)", self._checkCanAdapt)
        self.ui.adaptCollapsibleButton.connect("contentsCollapsed(bool)", self.onAdaptSectionCollapsed)
        self.refreshGenerators()
        self.refreshAdaptBases()
        self.initializeParameterNode()
        self._checkCanAdapt()

    def cleanup(self):
        for timer in (self._timer, self._adaptTimer):
            if timer is not None:
                timer.stop()
        for run in (self._run, self._adaptRun):
            if run is not None:
                run.cancel()
        self._run = self._adaptRun = None
        self.removeObservers()

    def enter(self):
        if self.logic is not None:  # None on an old Slicer: setup() only showed which version is needed
            self.initializeParameterNode()

    def exit(self):
        if self.logic is not None and self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanGenerate)

    def onSceneStartClose(self, caller, event):
        if self._run is not None:
            self.cancelRun("the scene was closed")
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputNode:
            for className in ("vtkMRMLSegmentationNode", "vtkMRMLLabelMapVolumeNode"):
                node = slicer.mrmlScene.GetFirstNodeByClass(className)
                if node:
                    self._parameterNode.inputNode = node
                    break

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanGenerate)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            from EchoSynthScene.models import stored_spec

            # Slicer's combo box connector clears and refills the Mode list on every connect (emitting
            # currentIndexChanged -1, then 0) before it shows the node's mode: that is not the user choosing
            # a mode, and must not overwrite the node's mode or model (a saved scene's).
            self._connecting = True
            try:
                self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            finally:
                self._connecting = False
            self._parameterNode.generator = stored_spec(self._parameterNode.generator)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanGenerate)
            self._showMode()
            self._checkCanGenerate()

    # --- generator list --------------------------------------------------------------------------

    def _task(self):
        """The generator list's task for the panel's mode (EchoSynthScene.models.generator_choices)."""
        from EchoSynthScene.models import task_of_mode

        return task_of_mode(self._parameterNode.mode if self._parameterNode is not None else "synthesize")

    def onModeChanged(self, index):
        """Another mode chosen (in the panel or by setting ``mode`` on the node): its generators; the model
        stays when the new mode offers it, else the mode's first one is chosen."""
        if self._parameterNode is None or index < 0 or self._connecting:
            return
        from EchoSynthScene.models import generator_choices

        # This slot may run before the parameter node's own binding has stored the new mode.
        self._parameterNode.mode = self.ui.modeSelector.itemText(index)
        choices = generator_choices(self._task())
        installed = [c for c in choices if c.download is None]
        current = self._parameterNode.generator
        if current not in {c.spec for c in installed} and not self._isFolderFor(current):
            self._parameterNode.generator = installed[0].spec if installed else ""
        self._showMode()

    def _isFolderFor(self, spec):
        """True when ``spec`` is a model folder picked by hand that can do the mode's task."""
        from EchoSynthLib.errors import InputError
        from EchoSynthScene.models import checked_model_folder

        if not spec or not os.path.isdir(spec):
            return False
        try:
            checked_model_folder(spec, self._task())
        except InputError:
            return False
        return True

    def _showMode(self):
        """The generator list of the mode, and the inputs the mode uses enabled."""
        self.refreshGenerators()
        mode = self._parameterNode.mode
        self.ui.inputSelector.enabled = mode != "generate"
        self.ui.referenceSelector.enabled = mode == "synthesize"
        self.ui.translateVolumeSelector.enabled = self.ui.useSegmenterCheckBox.enabled = mode == "translate"

    def refreshGenerators(self):
        """Fill the Generator list (the mode's: simulator and label-conditioned models, or paired models;
        installed, then listed for download) and the model manager's list."""
        from EchoSynthScene.models import generator_choices

        self._choices = generator_choices(self._task())
        self.ui.generatorSelector.blockSignals(True)
        self.ui.generatorSelector.clear()
        for choice in self._choices:
            self.ui.generatorSelector.addItem(choice.label, choice.spec)
        self.ui.generatorSelector.blockSignals(False)
        if self._parameterNode:
            self._selectGenerator(self._parameterNode.generator)
        self.refreshModelList()
        if self._parameterNode is not None and self._parameterNode.mode == "generate" and not self._choices:
            self.ui.statusLabel.text = _(
                "No paired-generation model is installed or listed for download: train one on your own "
                "image + label data with 'echosynth train latent-pairs' (an image + label autoencoder "
                "first; docs, DIFF-3) and add its folder under Models."
            )

    def _selectGenerator(self, spec):
        index = self.ui.generatorSelector.findData(spec)
        if index < 0 and not spec:
            return
        if index < 0:  # a model folder picked by hand
            self.ui.generatorSelector.addItem(_("Folder: {spec}").format(spec=spec), spec)
            index = self.ui.generatorSelector.count - 1
        self.ui.generatorSelector.blockSignals(True)
        self.ui.generatorSelector.currentIndex = index
        self.ui.generatorSelector.blockSignals(False)

    def onGeneratorChanged(self, index):
        """A model chosen: a listed model that is not installed is downloaded first (licence, progress,
        Cancel); if that does not happen, the earlier choice stays."""
        if not self._parameterNode or index < 0:
            return
        spec = self.ui.generatorSelector.itemData(index)
        choices = getattr(self, "_choices", [])
        listed = next((c.download for c in choices if c.spec == spec and c.download), None)
        if listed is not None and not self.downloadModel(listed):
            self._selectGenerator(self._parameterNode.generator)
            return
        self._parameterNode.generator = spec
        if listed is not None:
            self.refreshGenerators()

    def _modelsInstalled(self):
        """Download what the run names that is listed but not installed (its model; in translate mode with
        the segmenter, the segmenter too); False when one was not installed."""
        from EchoSynthLib.store.registry import download_needed, models_drawn_with
        from EchoSynthScene.translation import SEGMENTER

        names = [self._parameterNode.generator]
        if self._parameterNode.mode == "translate" and self._parameterNode.useSegmenter:
            names.append(SEGMENTER)
        needed = [model for model in map(download_needed, names) if model is not None]
        if not all(self.downloadModel(model) for model in needed):
            return False
        # A model that draws with another (a shape model's image model, an adapted model's base): that too.
        used = [u for name in names for u in models_drawn_with(name)]
        needed = [model for model in map(download_needed, used) if model is not None]
        return all(self.downloadModel(model) for model in needed)

    def downloadModel(self, model):
        """Download a listed model after its licence is accepted, with a progress dialog and Cancel; True
        when it was installed (the reason in the status line otherwise)."""
        from EchoSynthLib.errors import InputError
        from EchoSynthLib.store.downloads import DownloadCancelled, download_model, licence_prompt

        def ask(known):
            return slicer.util.confirmOkCancelDisplay(
                licence_prompt(known), windowTitle=_("EchoSynth: model licence")
            )

        dialog = slicer.util.createProgressDialog(
            parent=self.parent,
            value=0,
            maximum=1000,
            labelText=_("Downloading {name}...").format(name=model.name),
            windowTitle=_("EchoSynth: model download"),
        )

        def progress(done, total):
            dialog.value = int(1000 * done / total) if total else 0
            slicer.app.processEvents()
            if dialog.wasCanceled:
                raise DownloadCancelled(
                    _("the download of '{name}' was cancelled; nothing was installed").format(name=model.name)
                )

        try:
            path = download_model(model, ask=ask, progress=progress)
        except DownloadCancelled as error:
            self.ui.statusLabel.text = str(error)
            return False
        except InputError as error:
            self.ui.statusLabel.text = _("Not installed: {error}").format(error=error)
            if "licence was not accepted" not in str(error):
                slicer.util.errorDisplay(str(error), windowTitle=_("EchoSynth: model download"))
            return False
        finally:
            dialog.close()
        self.ui.statusLabel.text = _("Installed {name} in {path}").format(name=model.name, path=path)
        return True

    def onBrowseModel(self):
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("EchoSynth model folder"))
        if folder and self._parameterNode:
            message = _("This folder is not an EchoSynth model that makes images from label maps.")
            with slicer.util.tryWithErrorDisplay(message, waitCursor=True):
                from EchoSynthScene.models import checked_model_folder

                spec = checked_model_folder(folder, self._task())
                self._parameterNode.generator = spec
                self._selectGenerator(spec)

    # --- Generate / Cancel ----------------------------------------------------------------------

    def _checkCanGenerate(self, caller=None, event=None):
        if self._run is not None:
            self.ui.generateButton.text = _("Cancel")
            self.ui.generateButton.toolTip = _("Stop the synthesis; nothing is added to the scene")
            self.ui.generateButton.enabled = True
            return
        self.ui.generateButton.text = _("Generate")
        problem = self.logic.missingInput(self._parameterNode)
        self.ui.generateButton.enabled = problem is None
        mode = self._parameterNode.mode if self._parameterNode is not None else "synthesize"
        done = {
            "generate": _("Generate new cases (echo + segmentation) in a new study"),
            "translate": _("Translate the echo volume; the result goes beside it"),
        }.get(mode, _("Synthesize echo images for the input label map"))
        self.ui.generateButton.toolTip = problem or done

    def onGenerateButton(self):
        if self._run is not None:
            self.cancelRun("cancelled")
            return
        if not self.installDependencies() or not self._modelsInstalled():
            return
        with slicer.util.tryWithErrorDisplay(_("EchoSynth could not start."), waitCursor=True):
            self._run = self.logic.startSynthesis(self._parameterNode)
            self.ui.progressBar.value = 0
            self.ui.progressBar.visible = True
            self.ui.statusLabel.text = _("Starting the worker process...")
            self._timer.start()
        self._checkCanGenerate()

    def installDependencies(self):
        """Install what this run needs (asking first); False, with the reason in the panel, if not done."""
        from EchoSynthScene.dependencies import DependencyError, ensure, needs_for

        try:
            parameters = self._parameterNode
            ensure(needs_for(parameters.generator, parameters.augment, sampler=parameters.sampler), ask=None)
        except DependencyError as error:
            self.ui.statusLabel.text = _("Nothing was generated: {error}").format(error=error)
            if "declined" not in str(error):
                slicer.util.errorDisplay(str(error), windowTitle=_("EchoSynth: Python packages"))
            return False
        return True

    def _showEvents(self, run, bar, label, doing):
        """A worker's new events on a progress bar and status line (``doing``: the progress text, with
        ``{what}`` for the event's message)."""
        for event in run.poll():
            if event.kind == "progress" and event.fraction is not None:
                bar.value = int(1000 * event.fraction)
                label.text = doing.format(what=event.message)
            elif event.kind in ("start", "warning"):
                prefix = _("Warning: ") if event.kind == "warning" else ""
                label.text = prefix + event.message
                if event.kind == "warning":
                    logging.warning("EchoSynth: %s", event.message)

    def onPoll(self):
        """Timer: show the worker's progress; bring its results in when it ends."""
        if self._run is None:
            self._timer.stop()
            return
        self._showEvents(self._run, self.ui.progressBar, self.ui.statusLabel, _("Synthesizing {what}"))
        if self._run.running:
            return
        self._timer.stop()
        run, self._run = self._run, None
        self.ui.progressBar.visible = False
        try:
            nodes = run.finish()
        except Exception as error:
            self.ui.statusLabel.text = _("Failed: {error}").format(error=error)
            slicer.util.errorDisplay(_("EchoSynth synthesis failed:\n{error}").format(error=error))
        else:
            self.ui.statusLabel.text = _("Done: {count} new node(s).").format(count=len(nodes))
            self._showFirstImage(nodes)
        self._checkCanGenerate()

    def cancelRun(self, reason):
        self._timer.stop()
        run, self._run = self._run, None
        if run is not None:
            run.cancel()
        self.ui.progressBar.visible = False
        self.ui.statusLabel.text = _("Stopped ({reason}); the scene is unchanged.").format(reason=reason)
        self._checkCanGenerate()

    def _showFirstImage(self, nodes):
        volumes = [n for n in nodes if n.IsA("vtkMRMLScalarVolumeNode")]
        if volumes:
            slicer.util.setSliceViewerLayers(background=volumes[0], fit=True)

    # --- Adapt to my images --------------------------------------------------------------------
    # The scanner's images are written to the job when Adapt is pressed; the run then needs nothing of the
    # scene, so closing the scene does not stop it (the module's cleanup does).

    def refreshAdaptBases(self):
        """Fill the base model list (the label map -> image models: simulator, installed, listed for
        download), keeping the choice; the library's default base first time."""
        from EchoSynthScene.adaptation import DEFAULT_BASE
        from EchoSynthScene.models import generator_choices

        combo = self.ui.adaptBaseSelector
        current = combo.itemData(combo.currentIndex) if combo.currentIndex >= 0 else DEFAULT_BASE
        combo.blockSignals(True)
        combo.clear()
        for choice in generator_choices():
            combo.addItem(choice.label, choice.spec)
        index = combo.findData(current)
        combo.currentIndex = index if index >= 0 else max(combo.findData(DEFAULT_BASE), 0)
        combo.blockSignals(False)
        self._checkCanAdapt()

    def onAdaptSectionCollapsed(self, collapsed):
        if not collapsed:  # models may have been installed or removed since the list was filled
            self.refreshAdaptBases()

    def _adaptBase(self):
        combo = self.ui.adaptBaseSelector
        return combo.itemData(combo.currentIndex) if combo.currentIndex >= 0 else ""

    def _checkCanAdapt(self, *args):
        """The Adapt button: Cancel while a run goes on; else enabled when the images and base will do
        (its tooltip says what is missing). The name field suggests the default name."""
        if self._adaptRun is not None:
            self.ui.adaptButton.text = _("Cancel")
            self.ui.adaptButton.toolTip = _("Stop the adaptation; nothing is installed")
            self.ui.adaptButton.enabled = True
            return
        from EchoSynthScene.adaptation import adaptation_problem, default_model_name

        node = self.ui.adaptVolumeSelector.currentNode()
        problem = adaptation_problem(node, self._adaptBase())
        self.ui.adaptButton.text = _("Adapt")
        self.ui.adaptButton.enabled = problem is None
        self.ui.adaptButton.toolTip = problem or _(
            "Fit the base model's look to these images and install the new model among the generators"
        )
        self.ui.adaptNameLineEdit.placeholderText = default_model_name(node) if node is not None else ""

    def onAdaptButton(self):
        if self._adaptRun is not None:
            self.cancelAdapt(_("cancelled"))
            return
        from EchoSynthScene.adaptation import adaptation_problem, image_count

        node = self.ui.adaptVolumeSelector.currentNode()
        base = self._adaptBase()
        problem = adaptation_problem(node, base)
        if problem is not None:
            self.ui.adaptStatusLabel.text = problem
            return
        if not self._adaptPrepared(base):
            return
        settings = {
            "maps": int(self.ui.adaptMapsSpinBox.value),
            "rounds": int(self.ui.adaptRoundsSpinBox.value),
            "way_back": int(self.ui.adaptWayBackSpinBox.value),
            "device": self._parameterNode.device if self._parameterNode is not None else "auto",
        }
        name = self.ui.adaptNameLineEdit.text.strip() or None
        self.ui.adaptStatusLabel.text = _("Writing {count} images...").format(count=image_count(node))
        try:
            self._adaptRun = self.logic.startAdaptation(node, name, base, **settings)
        except Exception as error:
            self.ui.adaptStatusLabel.text = _("Nothing was adapted: {error}").format(error=error)
            slicer.util.errorDisplay(str(error), windowTitle=_("EchoSynth: adapt to my images"))
            self._checkCanAdapt()
            return
        self.ui.adaptProgressBar.value = 0
        self.ui.adaptProgressBar.visible = True
        self.ui.adaptStatusLabel.text = _("Starting the worker process...")
        self._adaptTimer.start()
        self._checkCanAdapt()

    def _adaptPrepared(self, base):
        """Install the Python packages an adaptation needs (asking first) and download the base model and
        the echo encoder when they are listed but not installed; False, with the reason shown, if not."""
        from EchoSynthLib.store.registry import download_needed
        from EchoSynthScene.adaptation import ENCODER, TRANSLATOR, adapt_needs
        from EchoSynthScene.dependencies import DependencyError, ensure

        try:
            ensure(adapt_needs(base), ask=None)
        except DependencyError as error:
            self.ui.adaptStatusLabel.text = _("Nothing was adapted: {error}").format(error=error)
            if "declined" not in str(error):
                slicer.util.errorDisplay(str(error), windowTitle=_("EchoSynth: Python packages"))
            return False
        wanted = (base, ENCODER, *((TRANSLATOR,) if self.ui.adaptWayBackSpinBox.value else ()))
        needed = [model for model in map(download_needed, wanted) if model is not None]
        if not needed:
            return True
        installed = all(self.downloadModel(model) for model in needed)
        self.refreshGenerators()
        self.refreshAdaptBases()
        if not installed:
            self.ui.adaptStatusLabel.text = _("Nothing was adapted: a model it needs was not installed")
        return installed

    def onAdaptPoll(self):
        """Timer: show the adaptation's progress; install its model when it ends."""
        if self._adaptRun is None:
            self._adaptTimer.stop()
            return
        self._showEvents(
            self._adaptRun, self.ui.adaptProgressBar, self.ui.adaptStatusLabel, _("Adapting: {what}")
        )
        if self._adaptRun.running:
            return
        self._adaptTimer.stop()
        run, self._adaptRun = self._adaptRun, None
        self.ui.adaptProgressBar.visible = False
        try:
            model = run.finish()
        except Exception as error:
            self.ui.adaptStatusLabel.text = _("Adapt failed; nothing was installed: {error}").format(
                error=error
            )
            slicer.util.errorDisplay(_("EchoSynth adaptation failed:\n{error}").format(error=error))
        else:
            self.showAdaptedModel(model.name)
            self.ui.adaptStatusLabel.text = _(
                "Installed '{name}' in {path}; it is chosen as the Generator: Generate draws in your "
                "scanner's look."
            ).format(name=model.name, path=model.path)
        self._checkCanAdapt()

    def showAdaptedModel(self, name):
        """A new model in the lists, chosen as the Generator (in synthesize mode when the panel was in
        generate mode, which takes paired models only) and selected in the model manager."""
        if self._parameterNode is not None:
            if self._parameterNode.mode == "generate":
                self._parameterNode.mode = "synthesize"
            self._parameterNode.generator = name
        self.refreshGenerators()
        self.refreshAdaptBases()
        items = self.ui.modelsList.findItems(f"{name} ", qt.Qt.MatchStartsWith)
        if items:
            self.ui.modelsList.setCurrentItem(items[0])

    def cancelAdapt(self, reason):
        self._adaptTimer.stop()
        run, self._adaptRun = self._adaptRun, None
        if run is not None:
            run.cancel()
        self.ui.adaptProgressBar.visible = False
        self.ui.adaptStatusLabel.text = _("Stopped ({reason}); nothing was installed.").format(reason=reason)
        self._checkCanAdapt()

    # --- model manager --------------------------------------------------------------------------

    def refreshModelList(self):
        from EchoSynthLib.errors import InputError
        from EchoSynthLib.store.registry import installed_models, read_manifest

        self.ui.modelsList.clear()
        models = installed_models()
        installed = {(m.name, m.version) for m in models}
        for model in models:
            licence = model.license or "licence not stated"
            self.ui.modelsList.addItem(f"{model.name} {model.version}: {model.source} ({licence})")
        try:
            known = read_manifest()
        except InputError as error:
            known = []
            self.ui.statusLabel.text = _("Model manifest: {error}").format(error=error)
        for model in known:
            if (model.name, model.version) not in installed:
                item = qt.QListWidgetItem(f"{model.name} {model.version}: download ({model.license})")
                item.setData(qt.Qt.UserRole, model.name)
                self.ui.modelsList.addItem(item)

    def onDownloadModel(self):
        item = self.ui.modelsList.currentItem()
        name = item.data(qt.Qt.UserRole) if item else None
        if not name:
            slicer.util.infoDisplay(_("Select a model marked 'download' in the list first."))
            return
        from EchoSynthLib.errors import InputError
        from EchoSynthLib.store.registry import find_known_model

        try:
            model = find_known_model(name)
        except InputError as error:
            slicer.util.errorDisplay(str(error))
            return
        if self.downloadModel(model):
            self.refreshGenerators()

    def onInstallFile(self):
        """Offline: install a model .zip fetched elsewhere (checked against the manifest when it lists it)."""
        path = qt.QFileDialog.getOpenFileName(
            self.parent, _("Model file to install"), "", _("Model packages (*.zip)")
        )
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("The model could not be installed."), waitCursor=True):
            from EchoSynthLib.store.registry import install_archive_file

            installed = install_archive_file(path)
            self.ui.statusLabel.text = _("Installed {path}").format(path=installed)
        self.refreshGenerators()

    def onAddModelFolder(self):
        title = _("Model package folder to add to the cache")
        folder = qt.QFileDialog.getExistingDirectory(self.parent, title)
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("The folder could not be added."), waitCursor=True):
            from EchoSynthLib.store.registry import install_from_folder

            path = install_from_folder(folder)
            self.ui.statusLabel.text = _("Added {path}").format(path=path)
        self.refreshGenerators()

    def onOpenCache(self):
        from EchoSynthLib.store.registry import user_cache_dir

        folder = user_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(folder)))

    def onClearCache(self):
        from EchoSynthLib.store.registry import clear_cache, user_cache_dir

        question = _("Remove every downloaded model from {folder}?").format(folder=user_cache_dir())
        if slicer.util.confirmOkCancelDisplay(question):
            removed = clear_cache()
            done = _("Removed {count} model(s) from the cache.")
            self.ui.statusLabel.text = done.format(count=len(removed))
            self.refreshGenerators()


class EchoSynthLogic(ScriptedLoadableModuleLogic):
    """Usable from the Python console and headless scripts; raises ValueError on bad input."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return EchoSynthParameterNode(super().getParameterNode())

    @staticmethod
    def missingInput(parameters):
        """What stops Generate (a sentence for the button's tooltip), or None when inputs are valid."""
        from EchoSynthScene.synthesis import generation_problem, input_problem
        from EchoSynthScene.translation import translation_problem

        if parameters is None:
            return "No parameter node"
        if parameters.mode == "generate":
            return generation_problem(parameters.generator)
        if parameters.mode == "translate":
            return translation_problem(
                parameters.translateVolume,
                parameters.inputNode,
                parameters.generator,
                parameters.useSegmenter,
            )
        return input_problem(parameters.inputNode, parameters.generator)

    def startSynthesis(self, parameters):
        """Start a background run for the panel (EchoSynthScene.synthesis.BackgroundSynthesis, or
        BackgroundGeneration in generate mode)."""
        from EchoSynthScene.synthesis import BackgroundGeneration, BackgroundSynthesis, SynthesisOptions

        options = SynthesisOptions.from_keywords(**optionsFromParameters(parameters))
        if parameters.mode == "generate":
            return BackgroundGeneration(slicer.mrmlScene, options)
        if parameters.mode == "translate":
            from EchoSynthScene.translation import BackgroundTranslation

            return BackgroundTranslation(
                parameters.translateVolume, options, parameters.inputNode, parameters.useSegmenter
            )
        return BackgroundSynthesis(parameters.inputNode, options, parameters.referenceVolume)

    def startAdaptation(self, node, name=None, base=None, **settings):
        """Start a background adaptation (EchoSynthScene.adaptation.BackgroundAdaptation) for the panel."""
        from EchoSynthScene.adaptation import DEFAULT_BASE, BackgroundAdaptation

        return BackgroundAdaptation(node, name, base or DEFAULT_BASE, **settings)

    @staticmethod
    def interactive(ask=None):
        """Whether to show dialogs: ``ask``, or when None, only when Slicer has a main window (a headless
        batch run, ``--no-main-window``, never waits on a dialog)."""
        return slicer.util.mainWindow() is not None if ask is None else bool(ask)

    def prepareRun(self, model, augment=0, ask=None, acceptLicence=False, sampler=None):
        """Before a blocking run: this Slicer can run EchoSynth, the Python packages the run needs are
        installed (asking first when interactive), and a model that is listed but not installed is
        downloaded (its licence accepted by ``acceptLicence``, earlier, or in a dialog when interactive)."""
        problem = slicerVersionProblem(slicer.app)
        if problem:
            raise RuntimeError(problem)
        from EchoSynthScene import dependencies

        interactive = self.interactive(ask)
        dependencies.ensure(dependencies.needs_for(model, augment, sampler=sampler), ask=interactive)
        self.downloadModel(model, acceptLicence=acceptLicence, ask=interactive)
        from EchoSynthLib.store.registry import models_drawn_with

        for used in models_drawn_with(model):  # a shape model's image model, an adapted model's base
            self.downloadModel(used, acceptLicence=acceptLicence, ask=interactive)

    def downloadModel(self, model, acceptLicence=False, ask=None):
        """Install ``model`` if it is a manifest model that is not installed yet (nothing to do for the
        simulator, an installed name or a folder); returns its folder, or None for the simulator."""
        if not model or model == "simulator":
            return None
        from EchoSynthLib.store.downloads import downloads_on_first_use, licence_prompt
        from EchoSynthLib.store.registry import resolve_model

        def dialog(known):
            return slicer.util.confirmOkCancelDisplay(
                licence_prompt(known), windowTitle=_("EchoSynth: model licence")
            )

        with downloads_on_first_use(accept=acceptLicence, ask=dialog if self.interactive(ask) else None):
            return resolve_model(model)

    def synthesize(
        self,
        inputNode,
        model="simulator",
        n=1,
        referenceVolumeNode=None,
        progress=None,
        ask=None,
        acceptLicence=False,
        **options,
    ):
        """Blocking: synthesize ``n`` images per label map and return the new nodes.

        ``model``: 'simulator', an installed or listed model's name, or a model folder. Other options: seed,
        steps, sampler, guidance_scale, augment, acquisition ('same', 'varied': new anatomies at a depth and
        sector of their own), looks, plane, slice_index, device ('auto', 'cpu', 'gpu').
        ``progress`` receives the worker's events (kind, message, fraction). ``ask``: show dialogs (installs,
        licences); None: only when Slicer has a main window. ``acceptLicence``: download a listed model
        without asking."""
        self.prepareRun(model, options.get("augment", 0), ask, acceptLicence, options.get("sampler"))
        from EchoSynthScene import synthesis

        return synthesis.synthesize(inputNode, referenceVolumeNode, progress, generator=model, n=n, **options)

    def generateCases(self, model, n=1, progress=None, ask=None, acceptLicence=False, **options):
        """Blocking: ``n`` new cases (echo volume + segmentation, in a new study) from a paired-generation
        model (an installed name or a folder). Other options: seed, steps, sampler, device; ``ask`` and
        ``acceptLicence`` as for ``synthesize``."""
        self.prepareRun(model, 0, ask, acceptLicence, options.get("sampler"))
        from EchoSynthScene import synthesis

        return synthesis.generate_cases(slicer.mrmlScene, progress, generator=model, n=n, **options)

    def translate(
        self,
        volumeNode,
        segmentationNode=None,
        model=None,
        segment=False,
        progress=None,
        ask=None,
        acceptLicence=False,
        **options,
    ):
        """Blocking: translate an echo volume (every frame of a sequence) with a label-guided model (an
        installed name or a folder); its anatomy from ``segmentationNode`` and/or, with ``segment``, the
        CAMUS segmenter (which fills only the structures the segmentation lacks). Other options: seed,
        device; ``ask`` and ``acceptLicence`` as for ``synthesize``. Returns the new nodes (beside the
        volume, in its study)."""
        self.prepareRun(model, 0, ask, acceptLicence, options.get("sampler"))
        from EchoSynthScene import translation

        if segment:
            self.downloadModel(translation.SEGMENTER, acceptLicence, ask)
        return translation.translate(
            volumeNode, segmentationNode, progress, segment=segment, generator=model, **options
        )

    def adapt(self, node, name=None, base=None, progress=None, ask=None, acceptLicence=False, **settings):
        """Blocking: a model in the look of your scanner, fitted to the images of ``node`` (a scalar volume:
        every frame of a sequence, or every slice of a stack of frames; at least 16 images) and installed in
        the user's model cache; returns its summary (``.name``, ``.path``): ``synthesize(..., model=name)``
        draws in that look. ``name``: the model's name (default "<node>-look"; "-2", "-3", ... are added
        when taken). ``base``: the model whose images are adapted (default latent-camus128; 'simulator', a
        name or a folder). Other settings: maps (base images, default 64), rounds (5), candidates (8),
        way_back (0; steps of a translator fine-tuned to undo the look, installed as the model's
        ``way-back`` folder: ``translate(..., model=str(summary.path / "way-back"))``), seed, device;
        ``ask`` and ``acceptLicence`` as for ``synthesize``."""
        problem = slicerVersionProblem(slicer.app)
        if problem:
            raise RuntimeError(problem)
        from EchoSynthScene import adaptation, dependencies

        base = base or adaptation.DEFAULT_BASE
        problem = adaptation.adaptation_problem(node, base)
        if problem is not None:  # before anything is installed or downloaded
            raise ValueError(problem)
        adaptation.check_settings(settings)
        dependencies.ensure(adaptation.adapt_needs(base), ask=self.interactive(ask))
        self.downloadModel(base, acceptLicence=acceptLicence, ask=ask)
        self.downloadModel(adaptation.ENCODER, acceptLicence=acceptLicence, ask=ask)
        if settings.get("way_back"):  # the translator the way back starts from
            self.downloadModel(adaptation.TRANSLATOR, acceptLicence=acceptLicence, ask=ask)
        return adaptation.adapt(node, name, base, progress, **settings)


class EchoSynthTest(ScriptedLoadableModuleTest):
    """Self-test, run inside Slicer (Reload and Test, or ctest in a Slicer build). Must pass before a
    release: the widget cannot run outside Slicer. The simulator tests need no download; a test that needs
    torch is skipped, with a message, when torch is not installed, and nothing is installed by the test."""

    WAIT_TIMEOUT_S = 120

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_labelmap_to_echo_keeps_geometry()
        self.setUp()
        self.test_segmentation_with_augmented_anatomy()
        self.setUp()
        self.test_panel_generate_and_cancel()
        self.setUp()
        self.test_generate_cases_needs_a_paired_model()
        self.setUp()
        self.test_translate_mode()
        self.setUp()
        self.test_adapt_to_my_images()

    def _phantomLabelmap(self, name="phantom"):
        from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
        from EchoSynthScene.geometry import fill_volume_node

        phantom = phantom_label_map("4CH", "ED", seed=0, grid=PhantomGrid.for_view("4CH", size=96))
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
        fill_volume_node(node, phantom.labels)
        return node

    def _installed(self, generator, augment=0):
        """True when everything a run needs is installed; else False, after saying the test is skipped."""
        from EchoSynthScene.dependencies import missing_for, needs_for

        if missing_for(needs_for(generator, augment)).nothing:
            return True
        message = "skipped: needs torch and MONAI, which are not installed (use the PyTorch Utils module)"
        logging.warning("EchoSynthTest: %s", message)
        self.delayDisplay(message)
        return False

    def _waitUntil(self, done, what):
        """Process events until ``done()``; a failure after WAIT_TIMEOUT_S."""
        deadline = time.monotonic() + self.WAIT_TIMEOUT_S
        while not done():
            if time.monotonic() > deadline:
                self.fail(f"{what} did not finish within {self.WAIT_TIMEOUT_S} s")
            slicer.app.processEvents()
            qt.QThread.msleep(50)

    def test_labelmap_to_echo_keeps_geometry(self):
        from EchoSynthScene.geometry import same_geometry

        labelNode = self._phantomLabelmap()
        (outputNode,) = EchoSynthLogic().synthesize(labelNode, model="simulator", seed=1)
        self.assertTrue(same_geometry(outputNode, labelNode))
        self.assertEqual(outputNode.GetName(), "phantom echo")
        self.delayDisplay("Labelmap to echo: passed")

    def test_segmentation_with_augmented_anatomy(self):
        if not self._installed("simulator", augment=1):
            return
        from EchoSynthScene.labels import add_segmentation_node, label_map_from_node

        labelNode = self._phantomLabelmap()
        segmentation = add_segmentation_node(slicer.mrmlScene, label_map_from_node(labelNode), "A4C")
        nodes = EchoSynthLogic().synthesize(segmentation, n=2, augment=1)
        self.assertEqual(
            [n.GetName() for n in nodes],
            ["A4C echo 1", "A4C echo 2", "A4C anatomy 1", "A4C anatomy 1 echo 1", "A4C anatomy 1 echo 2"],
        )
        self.delayDisplay("Segmentation with augmented anatomy: passed")

    def test_panel_generate_and_cancel(self):
        widget = slicer.modules.echosynth.widgetRepresentation().self()
        slicer.util.selectModule("EchoSynth")
        self.assertIsNotNone(widget.ui.inputSelector.mrmlScene())  # the .ui connection gave it the scene
        parameters = widget.logic.getParameterNode()
        parameters.inputNode = None
        self.assertFalse(widget.ui.generateButton.enabled)
        self.assertIn("Select an input", widget.ui.generateButton.toolTip)
        labelNode = self._phantomLabelmap("panel")
        self.assertGreater(widget.ui.inputSelector.nodeCount(), 0)  # the selector lists the new node
        parameters.inputNode = labelNode
        parameters.generator = "simulator"
        parameters.augment = 0
        parameters.samples = 50
        self.assertTrue(widget.ui.generateButton.enabled)
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        widget.ui.generateButton.click()
        self.assertEqual(widget.ui.generateButton.text, "Cancel")
        slicer.app.processEvents()
        widget.ui.generateButton.click()
        self.assertEqual(widget.ui.generateButton.text, "Generate")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        parameters.samples = 1
        widget.ui.generateButton.click()
        self._waitUntil(lambda: widget._run is None, "Generate")
        self.assertIsNotNone(slicer.mrmlScene.GetFirstNodeByName("panel echo"))
        self.delayDisplay("Panel Generate and Cancel: passed")

    def test_generate_cases_needs_a_paired_model(self):
        """Generate mode: no input; the simulator is not offered and Generate says why it cannot run; with
        an installed paired-generation model, its cases arrive as volume + segmentation in a new study."""
        from EchoSynthLib.store.families import NOTHING_TO_PAIRS
        from EchoSynthScene.models import generator_choices

        widget = slicer.modules.echosynth.widgetRepresentation().self()
        slicer.util.selectModule("EchoSynth")
        parameters = widget.logic.getParameterNode()
        widget.ui.modeSelector.currentIndex = widget.ui.modeSelector.findText("generate")
        self.assertEqual(parameters.mode, "generate")
        self.assertFalse(widget.ui.inputSelector.enabled)
        choices = generator_choices(NOTHING_TO_PAIRS)
        self.assertEqual(widget.ui.generatorSelector.count, len(choices))
        if not choices:
            self.assertFalse(widget.ui.generateButton.enabled)
            self.assertIn("paired-generation model", widget.ui.generateButton.toolTip)
            self.delayDisplay("Generate cases: no paired model installed; the panel says so")
        elif self._installed(choices[0].spec):
            nodes = EchoSynthLogic().generateCases(model=choices[0].spec, n=1, steps=5)
            self.assertEqual([n.GetName() for n in nodes], ["case 1 echo", "case 1 labels"])
            self.delayDisplay("Generate cases: passed")
        widget.ui.modeSelector.currentIndex = widget.ui.modeSelector.findText("synthesize")
        self.assertTrue(widget.ui.inputSelector.enabled)

    def test_translate_mode(self):
        """Translate mode: the echo volume selector and the segmenter option are enabled, the simulator is
        not offered, and Generate says what is missing; with an installed label-guided model, a volume and
        its segmentation give "<volume> translated" beside the volume."""
        from EchoSynthLib.simulation import simulate_bmode
        from EchoSynthScene.labels import add_segmentation_node, label_map_from_node
        from EchoSynthScene.models import TRANSLATION, generator_choices
        from EchoSynthScene.nodes import add_image_node

        widget = slicer.modules.echosynth.widgetRepresentation().self()
        slicer.util.selectModule("EchoSynth")
        parameters = widget.logic.getParameterNode()
        widget.ui.modeSelector.currentIndex = widget.ui.modeSelector.findText("translate")
        self.assertEqual(parameters.mode, "translate")
        self.assertTrue(widget.ui.translateVolumeSelector.enabled and widget.ui.useSegmenterCheckBox.enabled)
        self.assertFalse(widget.ui.referenceSelector.enabled)
        choices = generator_choices(TRANSLATION)
        self.assertEqual(widget.ui.generatorSelector.count, len(choices))
        self.assertEqual(widget.ui.generatorSelector.findData("simulator"), -1)
        labelNode = self._phantomLabelmap("translate")
        labels = label_map_from_node(labelNode)
        volume = add_image_node(slicer.mrmlScene, simulate_bmode(labels, seed=0), "scanner B")
        segmentation = add_segmentation_node(slicer.mrmlScene, labels, "scanner B labels")
        parameters.translateVolume = None
        self.assertFalse(widget.ui.generateButton.enabled)
        self.assertIn("echo volume", widget.ui.generateButton.toolTip)
        parameters.translateVolume = volume
        parameters.inputNode = segmentation
        if not choices:
            self.assertIn("label-guided model", widget.ui.generateButton.toolTip)
            self.delayDisplay("Translate: no label-guided model installed; the panel says so")
        elif self._installed(choices[0].spec):
            nodes = EchoSynthLogic().translate(volume, segmentation, model=choices[0].spec, seed=1)
            self.assertEqual([n.GetName() for n in nodes], ["scanner B translated"])
            self.delayDisplay("Translate: passed")
        widget.ui.modeSelector.currentIndex = widget.ui.modeSelector.findText("synthesize")
        self.assertFalse(widget.ui.translateVolumeSelector.enabled)

    def test_adapt_to_my_images(self):
        """Adapt to my images: too few frames are refused before any work; a sequence of 16 simulated frames
        gives a model, installed in a temporary model cache (the user's is not touched), that synthesize
        draws with."""
        import tempfile

        from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
        from EchoSynthLib.simulation import simulate_bmode
        from EchoSynthLib.store.registry import CACHE_ENV
        from EchoSynthScene.adaptation import ENCODER
        from EchoSynthScene.nodes import add_image_node, image_node
        from EchoSynthScene.sequences import sequences_logic

        frames = []
        for seed in range(16):
            view = ("4CH", "2CH")[seed % 2]
            labels = phantom_label_map(view, "ED", seed, PhantomGrid.for_view(view, size=48)).labels
            frames.append(simulate_bmode(labels, seed=seed))
        single = add_image_node(slicer.mrmlScene, frames[0], "one frame")
        with self.assertRaisesRegex(ValueError, "at least 16"):
            EchoSynthLogic().adapt(single, base="simulator", ask=False)
        if not self._installed(ENCODER):  # the fit compares images in the echo encoder's features
            return
        sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "scanner cine")
        for index, frame in enumerate(frames):
            sequence.SetDataNodeAtValue(image_node(frame, "frame"), str(index))
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "scanner browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        sequences_logic(slicer.mrmlScene).UpdateProxyNodesFromSequences(browser)
        proxy = browser.GetProxyNode(sequence)
        previous = os.environ.get(CACHE_ENV)
        with tempfile.TemporaryDirectory() as cache:
            os.environ[CACHE_ENV] = cache
            try:
                tiny = {"maps": 8, "rounds": 1, "candidates": 1}
                model = EchoSynthLogic().adapt(proxy, "self test", base="simulator", ask=False, **tiny)
                self.assertEqual((model.name, model.kind), ("self-test", "adapted-look"))
                (image,) = EchoSynthLogic().synthesize(self._phantomLabelmap(), model=model.name, ask=False)
                self.assertEqual(image.GetName(), "phantom echo")
            finally:
                if previous is None:
                    os.environ.pop(CACHE_ENV, None)
                else:
                    os.environ[CACHE_ENV] = previous
        self.delayDisplay("Adapt to my images: passed")
