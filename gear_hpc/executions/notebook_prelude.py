# mypy: ignore-errors
"""The prelude `gear convert` puts into a script that calls get_ipython().

This file is copied, from the first marker line to the last, into the
converted script, which may run under any python3 of an image: standard
library only, no annotations. gear also imports it, at convert time, to
refuse a magic's options that the fallback does not handle
(`_GearMagics.check`), so the two can never disagree.
"""

# --- added by gear convert: the magics above the cells became get_ipython() calls
# (IPython's transformer, as in `jupyter nbconvert --to script`). Under IPython they
# run as in the notebook; under plain python3 a small fallback runs the common ones.
def get_ipython():
    import sys
    global _gear_shell
    if "_gear_shell" in globals():
        return _gear_shell
    try:
        from IPython.core.interactiveshell import InteractiveShell
        _gear_shell = InteractiveShell.instance(user_module=sys.modules["__main__"])
        _gear_background(_gear_shell, _GearMagics(sys.modules["__main__"].__dict__))
    except ImportError:
        _gear_shell = _GearMagics(sys.modules["__main__"].__dict__)
    return _gear_shell


_gear_get_ipython = get_ipython  # what the magics call when the notebook binds get_ipython itself


def _gear_background(shell, fallback):
    """%%bash --bg (and its kin) as the fallback runs them, under IPython too: IPython reads a
    background script's output on its event loop, which only a kernel keeps running."""
    run_cell_magic = shell.run_cell_magic

    def run(name, line, cell):
        if name in ("bash", "sh", "script", "python", "python3") and "--bg" in line.split():
            return fallback.run_cell_magic(name, line, cell)
        return run_cell_magic(name, line, cell)
    shell.run_cell_magic = run


class _GearMagics:
    """Just enough of IPython for a converted notebook, in the standard library only."""

    display_only = {"matplotlib", "config", "load_ext", "reload_ext", "autoreload", "aimport", "notebook",
                    "qtconsole", "gui", "colors", "xmode", "precision", "autosave", "clear", "html", "HTML",
                    "markdown", "javascript", "js", "latex", "svg", "SVG"}
    # IPython's shell aliases (linux); %l is the rest of the line.
    aliases = {"ls": "ls -F", "ll": "ls -F -o", "lf": "ls -F -o %l | grep ^-", "lk": "ls -F -o %l | grep ^l",
               "ldir": "ls -F -o %l | grep /$", "lx": "ls -F -o %l | grep ^-..x", "mkdir": "mkdir",
               "rmdir": "rmdir", "mv": "mv", "rm": "rm", "cp": "cp", "cat": "cat"}
    # The options handled, per magic: short ones as getopt ("n:" takes a value), long ones (name=: takes one).
    options = {"timeit": ("n:r:p:qtc", ()), "cd": ("q", ()), "writefile": ("a", ("append",)),
               "capture": ("", ("no-stderr", "no-stdout", "no-display")),
               "script": ("", ("bg", "no-raise-error", "out=", "err=", "proc="))}
    line_magics = {"cd", "pwd", "pip", "env", "set_env", "sx", "system", "time", "timeit"}
    cell_magics = {"bash", "sh", "script", "python", "python3", "writefile", "time", "timeit", "capture"}

    def __init__(self, namespace):
        self.ns = namespace

    @classmethod
    def parse(cls, name, line, cell):
        """(options, the rest of the line) of %name / %%name; ValueError for an option not handled."""
        key = "script" if cell and name in ("bash", "sh", "script", "python", "python3") else name
        short, long = cls.options.get(key, ("", ()))
        found, rest = {}, line.strip()
        while rest.startswith("-") and rest != "-" and (short or long):
            word, _, after = rest.partition(" ")
            if word == "--":
                rest = after.strip()
                break
            if word.startswith("--"):
                option = word[2:]
                if option in long:
                    found[option] = True
                elif option + "=" in long:
                    value, _, after = after.strip().partition(" ")
                    if not value:
                        raise ValueError(f"{word} needs a value")
                    found[option] = value
                else:
                    raise ValueError(f"option {word}")
                rest = after.strip()
                continue
            letters = word[1:]
            while letters:
                letter, letters = letters[0], letters[1:]
                if letter not in short or letter == ":":
                    raise ValueError(f"option -{letter}")
                if short[short.index(letter) + 1:short.index(letter) + 2] == ":":
                    if not letters:
                        letters, _, after = after.strip().partition(" ")
                    if not letters.isdigit():
                        raise ValueError(f"-{letter} needs a number")
                    found[letter], letters = int(letters), ""
                else:
                    found[letter] = True
            rest = after.strip()
        if key == "script" and "bg" in found and ("out" in found or "err" in found):
            raise ValueError("--bg with --out or --err")
        if key == "script" and rest and name != "script":
            raise ValueError(f"argument {rest!r}")
        if key == "writefile" and not rest:
            raise ValueError("no file named")
        return found, rest

    @classmethod
    def check(cls, name, line, cell):  # type: (str, str, bool) -> str | None
        """Why the fallback cannot run %name / %%name with `line`, or None if it can (or does not know it)."""
        known = cls.cell_magics if cell else cls.line_magics | set(cls.aliases)
        if name in cls.display_only or name not in known:
            return None
        try:
            cls.parse(name, line, cell)
        except ValueError as exc:
            magic = ('%%' if cell else '%') + name
            return f"{magic} {line.strip()}: {exc} is not supported by gear's fallback for images without IPython"
        return None

    def _expand(self, text):
        # IPython expands $name and {name} from the user's variables, leaving the rest to the shell.
        import re
        def value(match):
            name = match.group(1) or match.group(2)
            return str(self.ns[name]) if name in self.ns else match.group(0)
        return re.sub(r"\$(\w+)|\{(\w+)\}", value, text)

    def system(self, command):
        import subprocess
        import sys
        sys.stdout.flush()
        self.ns["_exit_code"] = subprocess.run(self._expand(command), shell=True).returncode

    def getoutput(self, command, split=True, depth=0):
        import subprocess
        out = subprocess.run(self._expand(command), shell=True, stdout=subprocess.PIPE, text=True).stdout
        return out.splitlines() if split else out

    def _timeit(self, opts, stmt, setup):
        import math
        import timeit
        timer = timeit.Timer(stmt, setup, globals=self.ns)
        number = opts.get("n") or timer.autorange()[0]
        runs = opts.get("r") or 7
        times = [t / number for t in timer.repeat(runs, number)]
        mean = sum(times) / len(times)
        std = math.sqrt(sum((t - mean) ** 2 for t in times) / len(times))
        if not opts.get("q"):
            print(f"{mean * 1e6:.3g} us ± {std * 1e6:.3g} us per loop (mean ± std. dev. of {runs} runs, "
                  f"{number} loops each)")

    def run_line_magic(self, name, line, _stack_depth=1):
        import os
        import subprocess
        import sys
        import time
        line = self._expand(line)
        if name in self.display_only:
            return None
        if name not in self.line_magics and name not in self.aliases:
            raise RuntimeError(f"%{name} needs IPython: install it in the image (pip install ipython) "
                               "or remove the magic from the notebook")
        opts, rest = self.parse(name, line, False)
        if name in self.aliases:
            alias = self.aliases[name]
            self.system(alias.replace("%l", rest) if "%l" in alias else f"{alias} {rest}")
        elif name == "cd":
            os.chdir(os.path.expanduser(rest or "~"))
            if not opts.get("q"):
                print(os.getcwd())
        elif name == "pwd":
            return os.getcwd()
        elif name == "pip":
            sys.stdout.flush()
            subprocess.run([sys.executable, "-m", "pip", *line.split()], check=True)
        elif name in ("env", "set_env"):
            key, sep, value = line.replace("=", " ", 1).partition(" ")
            if sep:
                os.environ[key.strip()] = value.strip()
            else:
                return os.environ.get(key.strip()) if key.strip() else dict(os.environ)
        elif name in ("sx", "system"):
            return self.getoutput(line)
        elif name == "timeit":
            self._timeit(opts, rest, "pass")
        else:
            started = time.perf_counter()
            exec(compile(line, "<%time>", "exec"), self.ns)
            print(f"Wall time: {time.perf_counter() - started:.3f} s")
        return None

    def run_cell_magic(self, name, line, cell):
        import contextlib
        import io
        import subprocess
        import sys
        import time
        if name in self.display_only:
            return None
        if name not in self.cell_magics:
            raise RuntimeError(f"%%{name} needs IPython: install it in the image (pip install ipython) "
                               "or remove the magic from the notebook")
        opts, rest = self.parse(name, line, True)
        if name in ("bash", "sh", "script", "python", "python3"):
            argv = {"bash": ["bash"], "sh": ["sh"], "script": rest.split()}.get(name) or [sys.executable]
            sys.stdout.flush()
            sys.stderr.flush()
            pipe = subprocess.PIPE
            if opts.get("bg"):
                proc = subprocess.Popen(argv, stdin=pipe, text=True)
                proc.stdin.write(cell)
                proc.stdin.close()
                if opts.get("proc"):
                    self.ns[opts["proc"]] = proc
                return None
            done = subprocess.run(argv, input=cell, text=True, stdout=pipe if opts.get("out") else None,
                                  stderr=pipe if opts.get("err") else None)
            for stream in ("out", "err"):
                if opts.get(stream):
                    self.ns[opts[stream]] = getattr(done, "std" + stream)
            if done.returncode and not opts.get("no-raise-error"):
                raise subprocess.CalledProcessError(done.returncode, argv)
        elif name == "writefile":
            with open(rest, "a" if opts.get("a") or opts.get("append") else "w") as out:
                out.write(cell)
        elif name == "timeit":
            self._timeit(opts, cell, rest or "pass")
        elif name == "capture":
            out, err = io.StringIO(), io.StringIO()
            with contextlib.ExitStack() as stack:
                if not opts.get("no-stdout"):
                    stack.enter_context(contextlib.redirect_stdout(out))
                if not opts.get("no-stderr"):
                    stack.enter_context(contextlib.redirect_stderr(err))
                exec(compile(cell, "<%%capture>", "exec"), self.ns)
            if rest:
                self.ns[rest] = _GearCaptured(out.getvalue(), err.getvalue())
        else:
            started = time.perf_counter()
            exec(compile(cell, "<%%time>", "exec"), self.ns)
            print(f"Wall time: {time.perf_counter() - started:.3f} s")
        return None


class _GearCaptured:
    """What %%capture VAR keeps: .stdout, .stderr, .show()."""

    def __init__(self, stdout, stderr):
        self.stdout, self.stderr, self.outputs = stdout, stderr, []

    def show(self):
        import sys
        sys.stdout.write(self.stdout)
        sys.stderr.write(self.stderr)

    __call__ = show
# --- end of gear's prelude
