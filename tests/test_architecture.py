"""The package's layering: inference never loads training code, the import
graph of `walt/` has no cycles, and lower layers never import upper ones."""

import ast
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), 'walt')

# Layers, lowest first: a module may import its own layer and lower ones.
LAYERS = [
    {'walt.parallel', 'walt.config_lib', 'walt.defaults', 'walt.media',
     'walt.checkpoint', 'walt.weight_files', 'walt.storage'},
    {'walt.models', 'walt.diffusion', 'walt.data', 'walt.text'},
    {'walt.inference', 'walt.sampler'},
    {'walt.evaluation'},
    {'walt.train'},
    {'walt.jobs', 'walt.preflight', 'walt.main', 'walt.sample', 'walt.cascade',
     'walt.quickstart', 'walt.tools', 'walt.benchmark'},
]


def _module_name(path: str) -> str:
  rel = os.path.relpath(path, os.path.dirname(ROOT))[:-len('.py')]
  parts = rel.split(os.sep)
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


def _exists(module: str) -> bool:
  base = os.path.join(os.path.dirname(ROOT), *module.split('.'))
  return os.path.exists(base + '.py') or os.path.isdir(base)


def import_graph() -> dict[str, set[str]]:
  """module -> walt modules it imports (anywhere in the file, including
  imports inside functions)."""
  graph = {}
  for dirpath, _, files in os.walk(ROOT):
    for name in files:
      if not name.endswith('.py'):
        continue
      path = os.path.join(dirpath, name)
      module = _module_name(path)
      with open(path) as f:
        tree = ast.parse(f.read())
      deps = set()
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
          targets = [f'{node.module}.{a.name}' if _exists(
              f'{node.module}.{a.name}') else node.module
                     for a in node.names]
        else:
          continue
        deps.update(t for t in targets if t.startswith('walt.')
                    or t == 'walt')
      # A package's own submodules importing it are not a cycle.
      deps.discard(module)
      graph[module] = deps
  return graph


def _strongly_connected(graph):
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w not in graph:
        continue
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      out.append(component)

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def _layer(module: str) -> int:
  for i, names in enumerate(LAYERS):
    if any(module == n or module.startswith(n + '.') for n in names):
      return i
  raise AssertionError(f'{module} is in no layer: add it to LAYERS')


def test_import_graph_has_no_cycles():
  graph = import_graph()
  # Package __init__ re-exports are edges from the package to its own
  # children; cycles through them are not import cycles.
  graph = {m: {d for d in deps if not d.startswith(m + '.')}
           for m, deps in graph.items()}
  cycles = [c for c in _strongly_connected(graph) if len(c) > 1]
  assert not cycles, f'import cycles: {cycles}'


def test_lower_layers_never_import_upper_ones():
  bad = []
  for module, deps in import_graph().items():
    if module == 'walt':
      continue
    for dep in deps:
      if dep != 'walt' and _layer(dep) > _layer(module):
        bad.append(f'{module} -> {dep}')
  assert not bad, 'imports against the layering:\n' + '\n'.join(sorted(bad))


def test_inference_and_sampling_cli_load_no_training_code():
  # The two CLIs define flags of the same names: one process each.
  for cli in ('walt.sample', 'walt.cascade'):
    code = (f'import sys, walt.inference, {cli}, walt.sampler; '
            'print(",".join(m for m in sys.modules '
            'if m.startswith("walt.train")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True,
                         cwd=os.path.dirname(ROOT)).stdout.strip()
    assert out == '', f'{cli} loaded training modules: {out}'
