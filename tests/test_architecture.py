"""The package's shape: an import graph without cycles, the modules that never import the training loop, and a
Trainer whose state is all set up in ``__init__``."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cifar_resnet"
FILES = {".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): path
         for path in PACKAGE.rglob("*.py") if path.name != "__main__.py" and path != PACKAGE / "__init__.py"}
MODULES = set(FILES)  # dotted names inside the package: 'train', 'exercises', 'exercises.marking', ...
TRAINER_LINES = 150  # Trainer stays shorter than this


def package_imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports, at its top or inside a function."""
    path = FILES[module]
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]  # its package, inside ours
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - node.level + 1]
            stem = ".".join(base + node.module.split(".")) if node.module else ".".join(base)
            found |= {stem} if node.module else {".".join(base + [alias.name]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cifar_resnet."):
            found.add(node.module.split(".", 1)[1])
    return found & MODULES


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for imported in package_imports(todo.pop()) - seen:
            seen.add(imported)
            todo.append(imported)
    return seen


def test_no_module_of_the_package_imports_itself_back():
    circles = sorted(module for module in MODULES if module in reachable(module))
    assert not circles, f"import circles through {circles}"
    assert "model" not in reachable("config")  # a configuration is checked without the layers that build it


def test_plots_exercises_and_the_handin_never_import_the_training_loop():
    for module in ("plots", "diagrams", "exercises", "handin", "report", "kaggle", "evaluate"):
        assert "train" not in reachable(module), module


def test_the_trainer_sets_its_attributes_in_init_only_and_stays_short():
    tree = ast.parse((PACKAGE / "train.py").read_text())
    trainer = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Trainer")
    assert trainer.end_lineno - trainer.lineno + 1 < TRAINER_LINES
    set_later = {(method.name, node.attr) for method in trainer.body if isinstance(method, ast.FunctionDef)
                 and method.name != "__init__" for node in ast.walk(method)
                 if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                 and isinstance(node.value, ast.Name) and node.value.id == "self"}
    assert not set_later, f"attributes set outside __init__: {sorted(set_later)}"
