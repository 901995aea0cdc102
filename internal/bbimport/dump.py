# import-buildbot's loader: loads a master.cfg with buildbot's own loader
# (buildbot.config.master.FileLoader, as `buildbot checkconfig` does) and
# writes what it built as JSON to the file descriptor given as its second
# argument (not stdout: master.cfg's own prints go there, and are passed on
# to stderr by gbb-master), for gbb-master to turn into TOML.
# Exit 3: buildbot is not importable; 2: the config did not load (buildbot's
# errors on stderr); 4: master.cfg called sys.exit.
import sys
# With -c, Python put the current directory (master.cfg's) first on
# sys.path: a helper module there named as a standard one (platform.py,
# email.py) would shadow it. buildbot's loader appends the basedir itself.
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import traceback
import warnings


def main():
    warnings.simplefilter("ignore")
    path = os.path.abspath(sys.argv[1])
    out_fd = int(sys.argv[2])
    try:
        from buildbot.config.master import FileLoader
        from buildbot.config.errors import ConfigErrors
        from buildbot.changes import filter as cfilter
    except ImportError as e:
        print(f"buildbot is not importable by {sys.executable}: {e}", file=sys.stderr)
        sys.exit(3)
    # A ChangeFilter keeps only matcher objects; keep the arguments it was
    # given too.
    orig = cfilter.ChangeFilter.__init__

    def init(self, *args, **kwargs):
        self._gbb_kwargs = kwargs
        orig(self, *args, **kwargs)
    cfilter.ChangeFilter.__init__ = init
    try:
        cfg = FileLoader(os.path.dirname(path), os.path.basename(path)).loadConfig()
    except ConfigErrors as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        sys.exit(2)
    except SystemExit as e:
        print(f"master.cfg called sys.exit({e.code!r}) while buildbot loaded it", file=sys.stderr)
        sys.exit(4)
    except Exception:
        traceback.print_exc()
        sys.exit(2)
    out = Walker().config(cfg)
    out["basedir"] = os.path.dirname(path)
    with os.fdopen(out_fd, "w") as f:
        json.dump(out, f, indent=1, sort_keys=False)


def untranslatable(why):
    return {"$gbb": "untranslatable", "why": why}


class Walker:
    def __init__(self):
        self.locks = {}

    def enc(self, v, depth=0):
        from buildbot.process import properties as P
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, (list, tuple, set, frozenset)):
            return [self.enc(e, depth) for e in v]
        if isinstance(v, dict):
            return {str(k): self.enc(e, depth) for k, e in v.items()}
        if isinstance(v, P.Interpolate):
            if v.args or v.kwargs:
                return untranslatable(f"{v!r}: Interpolate with positional or keyword arguments")
            if "%(kw:" in v.fmtstring:
                # buildbot renders it from the Interpolate's own (here
                # missing) keyword arguments; in gbb %(kw:KEY)s is a
                # builder matrix's value: never the same.
                return untranslatable(f"{v.fmtstring!r}: %(kw:...)s in an Interpolate without keyword arguments")
            return {"$gbb": "interp", "s": v.fmtstring}
        if isinstance(v, P.Property):
            if v.default is None:
                return {"$gbb": "interp", "s": f"%(prop:{v.key})s"}
            if isinstance(v.default, str):
                # defaultWhenFalse: the default for any false value, ":~".
                op = "~" if v.defaultWhenFalse else "-"
                return {"$gbb": "interp", "s": f"%(prop:{v.key}:{op}{v.default})s"}
            return untranslatable(f"Property({v.key!r}) with a default that is not a string")
        if isinstance(v, P._SecretRenderer):
            return {"$gbb": "interp", "s": f"%(secret:{v.secret_name})s"}
        if isinstance(v, P.WithProperties):
            return untranslatable(f"WithProperties({v.fmtstring!r}): write it as Interpolate")
        if inspect.isfunction(v) or inspect.ismethod(v) or inspect.isbuiltin(v):
            return untranslatable(f"a Python callable ({getattr(v, '__qualname__', v)!r})")
        cls = type(v).__name__
        from buildbot.interfaces import IRenderable
        if IRenderable.providedBy(v):
            return untranslatable(f"a renderable {cls} ({v!r})")
        if isinstance(v, P.Properties):
            return {k: self.enc(e[0], depth) for k, e in v.properties.items()}
        from buildbot.changes.filter import ChangeFilter
        if isinstance(v, ChangeFilter):
            return {"$gbb": "filter", "kwargs": self.enc(getattr(v, "_gbb_kwargs", {}), depth)}
        from buildbot.schedulers.forcesched import BaseParameter
        if isinstance(v, BaseParameter):
            d = {"$gbb": "param", "class": cls}
            for k in ("name", "label", "default", "required", "multiple", "regex", "choices",
                      "need_email", "codebase", "fields", "strict"):
                if hasattr(v, k):
                    e = getattr(v, k)
                    if k == "regex" and e is not None and hasattr(e, "pattern"):
                        e = e.pattern
                    d[k] = self.enc(e, depth + 1)
            return d
        from buildbot import locks
        if isinstance(v, locks.LockAccess):
            return {"$gbb": "lock", "name": self.lock(v.lockid), "mode": v.mode}
        if isinstance(v, locks.BaseLockId):
            return {"$gbb": "lock", "name": self.lock(v), "mode": "counting"}
        if callable(v) and not hasattr(v, "__dict__"):
            return untranslatable(f"a Python callable ({v!r})")
        if depth > 3:
            return {"$gbb": "object", "class": cls}
        d = {"$gbb": "object", "class": cls, "module": type(v).__module__}
        for k, e in vars(v).items():
            if k.startswith("_") and k not in ("_config_kwargs", "_gbb_kwargs"):
                continue
            if k in ("master", "parent", "namedServices", "services", "brd"):
                continue
            try:
                d[k] = self.enc(e, depth + 1)
            except Exception as x:  # an attribute we cannot read
                d[k] = untranslatable(f"{k}: {x}")
        if callable(v) and type(v).__call__ is not object.__call__ and not d.get("_config_kwargs"):
            d["$callable"] = True
        return d

    def auth(self, a):
        d = {"class": type(a).__name__}
        checkers = getattr(a, "checkers", None) or []
        if type(a).__name__ == "UserPasswordAuth" and checkers and hasattr(checkers[0], "users"):
            d["users"] = {(u.decode() if isinstance(u, bytes) else u): self.enc(pw)
                          for u, pw in checkers[0].users.items()}
        elif type(a).__name__ == "HTPasswdAuth" and checkers and hasattr(checkers[0], "filename"):
            d["file"] = self.enc(checkers[0].filename)
        return d

    def authz(self, z):
        rules = []
        for r in getattr(z, "allowRules", None) or []:
            e = {"class": type(r).__name__, "role": self.enc(r.role),
                 "defaultDeny": bool(getattr(r, "defaultDeny", True))}
            for k in ("builder", "branch", "project"):
                if getattr(r, k, None) is not None:
                    e[k] = self.enc(getattr(r, k))
            rules.append(e)
        matchers = []
        for m in getattr(z, "roleMatchers", None) or []:
            e = {"class": type(m).__name__}
            for k in ("roles", "usernames", "groupPrefix", "role"):
                if hasattr(m, k):
                    e[k] = self.enc(getattr(m, k))
            matchers.append(e)
        return {"class": type(z).__name__, "allowRules": rules, "roleMatchers": matchers,
                "fnmatch": getattr(z, "match", None) is not None and
                getattr(z.match, "__name__", "") == "fnmatchStrMatcher"}

    def lock(self, lk):
        from buildbot import locks
        kind = "worker" if isinstance(lk, locks.WorkerLock) else "master"
        entry = {"name": lk.name, "type": kind, "max_count": lk.maxCount}
        if kind == "worker" and lk.maxCountForWorker:
            entry["max_count_for_worker"] = dict(lk.maxCountForWorker)
        self.locks.setdefault(lk.name, entry)
        return lk.name

    def bound(self, obj, fn, args, kwargs):
        """The arguments obj was configured with, by parameter name."""
        params = {}
        if args:
            try:
                ba = inspect.signature(fn).bind_partial(*args)
                params.update(ba.arguments)
            except (TypeError, ValueError):
                params["$args"] = list(args)
        params.update(kwargs)
        return {k: self.enc(v) for k, v in params.items()}

    def service(self, s):
        fn = getattr(s, "checkConfig", None) or s.__init__
        return {
            "class": type(s).__name__,
            "module": type(s).__module__,
            "name": getattr(s, "name", None),
            "params": self.bound(s, fn, getattr(s, "_config_args", ()), getattr(s, "_config_kwargs", {})),
        }

    def step(self, sf):
        cls = sf.factory
        # The results the step's instance has (its class's defaults, such
        # as Compile's haltOnFailure, and its arguments).
        flags = {}
        try:
            inst = sf.buildStep()
            for k in ("haltOnFailure", "flunkOnFailure", "warnOnFailure", "warnOnWarnings",
                      "flunkOnWarnings", "alwaysRun"):
                v = getattr(inst, k, None)
                flags[k] = bool(v) if isinstance(v, (bool, int)) else self.enc(v)
        except Exception as x:
            flags = untranslatable(f"the step could not be made: {x!r}")
        return {
            "flags": flags,
            "class": cls.__name__,
            "module": cls.__module__,
            "default_name": getattr(cls, "name", None),
            "params": self.bound(None, cls.__init__, (None,) + tuple(sf.args), sf.kwargs) if sf.args
            else self.bound(None, cls.__init__, (), sf.kwargs),
        }

    def config(self, c):
        global safeTranslate, bytes2unicode
        from buildbot.util import safeTranslate, bytes2unicode
        out = {
            "title": c.title, "titleURL": c.titleURL, "buildbotURL": c.buildbotURL,
            "protocols": self.enc(c.protocols),
            "properties": {k: self.enc(v[0]) for k, v in c.properties.properties.items()},
            "collapseRequests": self.enc(c.collapseRequests),
            "logMaxSize": c.logMaxSize, "logMaxTailSize": c.logMaxTailSize,
            "db": self.enc(c.db),
            "www": self.enc({k: v for k, v in c.www.items() if k in ("port", "change_hook_dialects", "auth", "authz", "plugins")}),
        }
        if "auth" in c.www:
            out["www"]["auth"] = self.auth(c.www["auth"])
        if "authz" in c.www:
            out["www"]["authz"] = self.authz(c.www["authz"])
        out["workers"] = []
        for w in c.workers:
            e = self.service(w)
            e["name"] = w.workername
            out["workers"].append(e)
        out["change_source"] = []
        for cs in c.change_sources:
            e = self.service(cs)
            # buildbot gives a poller's changes their codebase with
            # c['codebaseGenerator']; gbb sets it on the poller: ask the
            # generator for the poller's repository.
            repourl = e["params"].get("repourl")
            if c.codebaseGenerator is not None and isinstance(repourl, str):
                chdict = {"repository": repourl, "project": e["params"].get("project") or "",
                          "category": e["params"].get("category"), "branch": None,
                          "revision": None, "author": None, "comments": "", "files": [],
                          "properties": {}, "when_timestamp": None, "revlink": "", "src": "git"}
                try:
                    e["codebase"] = str(c.codebaseGenerator(chdict))
                except Exception as x:
                    e["codebase"] = untranslatable(f"codebaseGenerator failed on {repourl!r}: {x!r}")
            out["change_source"].append(e)
        out["codebaseGenerator"] = c.codebaseGenerator is not None
        out["schedulers"] = []
        for s in c.schedulers.values() if isinstance(c.schedulers, dict) else c.schedulers:
            e = {"class": type(s).__name__, "module": type(s).__module__, "name": s.name, "params": {}}
            skip = {"serviceid", "active", "rendered", "objectid", "reason", "reasonString",
                    "all_fields", "forcedProperties", "username"}
            for k, v in vars(s).items():
                if k.startswith("_") or k in skip or k in ("services", "namedServices", "parent", "master"):
                    continue
                e["params"][k] = self.enc(v)
            if type(s).__name__ == "ForceScheduler":
                e["force"] = {
                    "reason": self.enc(s.reason), "username": self.enc(s.username),
                    "properties": [self.enc(p) for p in s.forcedProperties],
                    "codebases": [self.enc(cb) for cb in s.codebases.values()] if isinstance(s.codebases, dict) else self.enc(s.codebases),
                    "label": s.label, "buttonName": s.buttonName,
                }
            out["schedulers"].append(e)
        out["builders"] = []
        for b in c.builders:
            out["builders"].append({
                "name": b.name, "workernames": list(b.workernames),
                "description": b.description, "tags": list(b.tags or []),
                "locks": [self.enc(lk) for lk in (b.locks or [])] if isinstance(b.locks, (list, tuple)) else self.enc(b.locks),
                "env": self.enc(b.env), "properties": self.enc(b.properties),
                "defaultProperties": self.enc(b.defaultProperties),
                "workerbuilddir": b.workerbuilddir,
                # Only a builddir master.cfg chose (buildbot's default is
                # the builder's name, made safe).
                "builddir": None if b.builddir == bytes2unicode(safeTranslate(b.name)) else b.builddir,
                "collapseRequests": self.enc(b.collapseRequests),
                "nextWorker": self.enc(b.nextWorker), "nextBuild": self.enc(b.nextBuild),
                "canStartBuild": self.enc(b.canStartBuild),
                "factory": type(b.factory).__name__,
                "factory_workdir": getattr(b.factory, "workdir", "build"),
                "steps": [self.step(sf) for sf in b.factory.steps],
            })
        out["services"] = [self.service(s) for s in c.services.values()]
        out["secretsProviders"] = [self.service(s) for s in (c.secretsProviders or [])]
        out["locks"] = list(self.locks.values())
        return out


if __name__ == "__main__":
    main()
