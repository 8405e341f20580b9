"""A private X display for the GUI tests: Xvfb on a display it picks
itself, a private D-Bus session bus, screenshots (ImageMagick's `import`),
OCR (tesseract) and clicks and keys (xdotool).  Every process started here
is stopped by PID in stop(), which the fixtures call even when a test
fails; the screenshots stay in the test's directory for diagnosis."""
import os
import re
import select
import shutil
import subprocess
import time

TOOLS = ("Xvfb", "dbus-daemon", "xdotool", "import", "convert", "tesseract")


def missing_tools():
    return [t for t in TOOLS if shutil.which(t) is None]


def _read_line(f, what, timeout, proc):
    """One line from pipe f within timeout, or an AssertionError naming what."""
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no {what} within {timeout} s"
        if select.select([f], [], [], min(left, 0.5))[0]:
            chunk = os.read(f.fileno(), 256)
            assert chunk, f"{what}: the process exited ({proc.poll()})"
            buf += chunk
    return buf.decode().strip()


class Near:
    """A string read by OCR with at most `edits` characters wrong, missing
    or added (0/o/O and 1/l/I count as the same): for long strings, such as
    a UUID, that one misread glyph must not hide, yet that no other text
    on a screen comes within a few edits of."""

    SAME = {"o": "0", "O": "0", "l": "1", "I": "1"}

    def __init__(self, s, edits=2):
        self.s, self.edits = s, edits

    def __repr__(self):
        return f"Near({self.s!r}, edits={self.edits})"

    def search(self, text):
        # Sellers' approximate substring match: the edit distance of
        # self.s to the best-matching substring of text ending at each
        # position, one column at a time.
        fold = lambda c: self.SAME.get(c, c)
        pat = [fold(c) for c in self.s]
        col = list(range(len(pat) + 1))
        for c in map(fold, text):
            prev, col[0] = col[0], 0
            for i, p in enumerate(pat, 1):
                prev, col[i] = col[i], min(col[i] + 1, col[i - 1] + 1, prev + (p != c))
            if col[-1] <= self.edits:
                return True
        return False


class Word:
    def __init__(self, text, left, top, width, height):
        self.text, self.left, self.top, self.width, self.height = text, left, top, width, height

    @property
    def center(self):
        return self.left + self.width // 2, self.top + self.height // 2

    def __repr__(self):
        return f"Word({self.text!r} at {self.left},{self.top} {self.width}x{self.height})"


class XSession:
    """Xvfb + a session bus; env is the environment for the clients."""

    SCALE = 3       # OCR reads GTK's 9-10 pt UI text reliably only enlarged

    def __init__(self, workdir, size="1280x1024x24"):
        self.workdir = workdir
        self.width, self.height = (int(v) for v in size.split("x")[:2])
        self.shots = os.path.join(workdir, "shots")
        os.makedirs(self.shots, exist_ok=True)
        self.nshot = 0
        self.procs = []
        self.logs = []
        home = os.path.join(workdir, "home")
        os.makedirs(home, exist_ok=True)
        try:
            self._start_xvfb(size)
            self._start_dbus(home)
        except BaseException:
            self.stop()
            raise

    def _start_xvfb(self, size):
        # -displayfd: the server takes the first free display and writes
        # its number when it accepts clients, so no display is guessed and
        # no wait is a sleep.
        r, w = os.pipe()
        log = self._log("xvfb.log")
        self.xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", size,
                                      "-nolisten", "tcp", "-noreset"],
                                     stdout=log, stderr=subprocess.STDOUT, pass_fds=(w,))
        self.procs.append(self.xvfb)
        os.close(w)
        with os.fdopen(r, "rb", buffering=0) as f:
            self.display = ":" + _read_line(f, "display number from Xvfb", 30, self.xvfb)

    def _start_dbus(self, home):
        self.dbus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile",
                                      "--print-address=1"],
                                     stdout=subprocess.PIPE, stderr=self._log("dbus.log"))
        self.procs.append(self.dbus)
        address = _read_line(self.dbus.stdout, "address from dbus-daemon", 30, self.dbus)
        # Nothing of the host's desktop state: a fresh home and XDG dirs,
        # GSettings in memory (no dconf), no accessibility bus, English.
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DISPLAY": self.display,
            "DBUS_SESSION_BUS_ADDRESS": address,
            "HOME": home,
            "XDG_CONFIG_HOME": os.path.join(home, ".config"),
            "XDG_CACHE_HOME": os.path.join(home, ".cache"),
            "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
            "XDG_RUNTIME_DIR": self._runtime_dir(home),
            "GSETTINGS_BACKEND": "memory",
            "NO_AT_BRIDGE": "1",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        # tesseract's threads only slow it down on a loaded machine (4x
        # on this one): one.
        self.ocr_env = dict(self.env, OMP_THREAD_LIMIT="1")

    @staticmethod
    def _runtime_dir(home):
        d = os.path.join(home, "run")
        os.makedirs(d, mode=0o700, exist_ok=True)
        return d

    def _log(self, name):
        f = open(os.path.join(self.workdir, name), "wb")
        self.logs.append(f)
        return f

    def popen(self, argv, logname):
        """A client on this display; its output in workdir/logname.  It is
        stopped with the session."""
        p = subprocess.Popen(argv, env=self.env, stdout=self._log(logname),
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def run(self, argv, timeout=60, check=True, env=None):
        r = subprocess.run(argv, env=env or self.env, capture_output=True, text=True,
                           timeout=timeout)
        assert not check or r.returncode == 0, (argv, r.returncode, r.stdout, r.stderr)
        return r

    def stop(self):
        """Every process started here, newest first, by PID: SIGTERM, then
        SIGKILL if it does not go."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []
        for f in self.logs:
            f.close()
        if getattr(self, "dbus", None) and self.dbus.stdout:
            self.dbus.stdout.close()

    # --- windows ----------------------------------------------------------

    def windows(self, name):
        """Ids of the visible windows whose title matches the regex name."""
        r = self.run(["xdotool", "search", "--onlyvisible", "--name", name], check=False)
        return [int(w) for w in r.stdout.split()]

    def wait_window(self, name, timeout=180):
        deadline = time.monotonic() + timeout
        while True:
            ids = self.windows(name)
            if ids:
                return ids[0]
            assert time.monotonic() < deadline, \
                f"no window {name!r} within {timeout} s; screen: {self.shot('no-window')}"
            time.sleep(0.1)

    def geometry(self, window):
        """(x, y, width, height) of a window on the screen."""
        out = self.run(["xdotool", "getwindowgeometry", "--shell", str(window)]).stdout
        g = dict(line.split("=", 1) for line in out.split())
        return int(g["X"]), int(g["Y"]), int(g["WIDTH"]), int(g["HEIGHT"])

    # --- screenshots and OCR ---------------------------------------------

    def shot(self, label, window=None):
        """A PNG of the window (or the whole screen), kept under shots/."""
        self.nshot += 1
        safe = re.sub(r"[^\w.-]", "_", label)
        path = os.path.join(self.shots, f"{self.nshot:03d}-{safe}.png")
        if window:
            # Without a window manager windows overlap at the screen's
            # origin, and a window's image holds whatever covers it.
            self.run(["xdotool", "windowraise", str(window)])
        self.run(["import", "-window", str(window) if window else "root", path])
        return path

    # The ways an image is prepared for tesseract, each read in turn:
    # as is, for dark-on-light UI text; inverted, for the light-on-dark
    # terminal; cut at mid-grey and inverted, for the white-on-blue text
    # of a selected row (grey, that blue is too close to white).
    PASSES = ([], ["-negate"], ["-threshold", "50%", "-negate"])

    def _prepared(self, png, n):
        out = f"{png[:-4]}.ocr{n}.png"
        self.run(["convert", png, "-colorspace", "gray", "-resize", f"{self.SCALE * 100}%"]
                 + self.PASSES[n] + [out])
        return out

    def _tesseract(self, png, *extra):
        """tesseract's output for each pass in turn."""
        for n in range(len(self.PASSES)):
            img = self._prepared(png, n)
            try:
                yield self.run(["tesseract", img, "-", "--psm", "11"] + list(extra),
                               env=self.ocr_env).stdout
            finally:
                os.unlink(img)

    def ocr(self, png, want=()):
        """The text tesseract reads in png, in every pass, or in the passes
        up to the one in which every string of want has been read."""
        text = ""
        for out in self._tesseract(png):
            text += out + "\n"
            if want and self.missing(want, text) == []:
                break
        return text

    @staticmethod
    def missing(want, text):
        """The strings (or compiled regexes, or Near strings) of want not
        in text."""
        flat = " ".join(text.split())       # a phrase may be read across lines
        return [t for t in want
                if not (t in flat if isinstance(t, str) else t.search(flat))]

    @staticmethod
    def lenient(s):
        """A regex for s that takes the letters OCR reads for its digits
        (o for 0, l and I for 1), for strings of hex digits."""
        conf = {"0": "[0oO]", "1": "[1lI]"}
        return re.compile("".join(conf.get(c, re.escape(c)) for c in s))

    @staticmethod
    def _words(tsv):
        for line in tsv.splitlines()[1:]:
            f = line.split("\t")
            if len(f) == 12 and f[11].strip():
                left, top, width, height = (int(v) // XSession.SCALE for v in f[6:10])
                yield Word(f[11].strip(), left, top, width, height)

    def wait_text(self, texts, window=None, label="wait", timeout=180):
        """Screenshots of window (or the screen), OCR'd until every string
        of texts is read in one of them; that screenshot's (path, text).
        On timeout the last screenshot's path and text are in the error."""
        deadline = time.monotonic() + timeout
        while True:
            path = self.shot(label, window)
            text = self.ocr(path, texts)
            missing = self.missing(texts, text)
            if not missing:
                return path, text
            if time.monotonic() > deadline:
                raise AssertionError(f"{missing} never read on {path} within {timeout} s; "
                                     f"OCR read:\n{text}")
            os.unlink(path)
            time.sleep(0.2)

    def find_word(self, word, window=None, label="find", timeout=180, pick=None):
        """Screen (or window) coordinates of the word read as word,
        waited for like wait_text; pick chooses among several (default:
        the first), or None to wait for more."""
        origin = self.geometry(window)[:2] if window else (0, 0)
        deadline = time.monotonic() + timeout
        while True:
            path = self.shot(label, window)
            w, hits = None, []
            for tsv in self._tesseract(path, "tsv"):
                # case aside: OCR reads "CPUs" as "cpus" at times
                for h in self._words(tsv):
                    # one word read in several passes is one hit
                    if h.text.lower() == word.lower() and not any(
                            abs(h.left - o.left) < 10 and abs(h.top - o.top) < 10 for o in hits):
                        hits.append(h)
                w = (pick(hits) if pick else hits[0]) if hits else None
                if w:
                    break
            if w:
                x, y = w.center
                return origin[0] + x, origin[1] + y
            if time.monotonic() > deadline:
                raise AssertionError(f"{word!r} never read on {path} within {timeout} s")
            os.unlink(path)
            time.sleep(0.2)

    # --- input --------------------------------------------------------------

    def click(self, x, y, button=1):
        """A click at screen coordinates."""
        self.run(["xdotool", "mousemove", str(x), str(y), "click", str(button)])

    def park_pointer(self):
        """The pointer to the screen's far corner, so no tooltip covers
        what a screenshot should show."""
        self.run(["xdotool", "mousemove", str(self.width - 1), str(self.height - 1)])

    def type(self, window, text):
        """Keys into window: without a window manager X gives no window
        the keyboard focus, so it is set first."""
        self.run(["xdotool", "windowfocus", "--sync", str(window)])
        self.run(["xdotool", "type", "--delay", "30", text])

    def key(self, window, *keys):
        self.run(["xdotool", "windowfocus", "--sync", str(window)])
        self.run(["xdotool", "key"] + list(keys))
