#!/usr/bin/env bash
# Real-client check: mbsync (Debian isync) against "twinmail dev".
#
#   integration/mbsync/check.sh [TWINMAIL_BINARY]
#
# Starts a private "twinmail dev" (PostgreSQL + IMAP + LMTP on free loopback ports) in a
# temporary folder, then syncs the account demo both ways with mbsync into a Maildir:
#
#   1. 20 messages delivered over LMTP into INBOX and 5 into Lists; mbsync -a; the Maildir
#      holds exactly those messages, once each.
#   2. Local changes: 3 new messages in INBOX and 1 in Lists, one message flagged and seen,
#      one marked trashed (T), one file removed, one Lists message marked seen; mbsync -a;
#      the server holds the new ones once each, the flags, and not the deleted ones.
#   3. Server changes: 5 more delivered, 2 expunged over IMAP, \Flagged set on one and
#      removed from another, \Answered set on a Lists message; mbsync -a; the Maildir matches.
#   4. mbsync -a once more changes nothing on either side.
#
# After every sync both sides are compared message by message: the set of Message-IDs per
# folder, no duplicates anywhere, the flags (Maildir filename letters against IMAP FLAGS),
# the message text (line endings and mbsync's X-TUID header aside), the folder list, and
# that messages already on the server kept their UIDs (nothing re-uploaded).
#
# Without an argument the binary is built from this checkout with "go build". mbsync is
# installed with apt-get (isync) when missing. Exit status 0 means PASS. The server is
# always stopped and the temporary folder removed (set MBSYNC_CHECK_KEEP=1 to keep it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
start=$(date +%s)

log() { echo "mbsync-check: $*"; }
die() {
	echo "mbsync-check: FAIL: $*" >&2
	exit 1
}

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

apt_install() {
	log "installing $*"
	export DEBIAN_FRONTEND=noninteractive
	if ! $sudo apt-get install -y "$@"; then
		$sudo apt-get update
		$sudo apt-get install -y "$@"
	fi
}

command -v mbsync >/dev/null 2>&1 || apt_install isync
command -v mbsync >/dev/null 2>&1 || die "mbsync still not found after installing isync"
command -v python3 >/dev/null 2>&1 || apt_install python3
command -v python3 >/dev/null 2>&1 || die "python3 not found"
log "$(mbsync --version 2>&1 | head -n1)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/twinmail-mbsync.XXXXXX")"
# Running as root, twinmail dev runs PostgreSQL as the "postgres" user, which must be able
# to reach the data folder below this one.
chmod 0711 "$tmp"
dev_pid=""

stop_dev() {
	[ -n "$dev_pid" ] || return 0
	if kill -0 "$dev_pid" 2>/dev/null; then
		kill -INT "$dev_pid" 2>/dev/null || true
		local i
		for i in $(seq 1 100); do
			kill -0 "$dev_pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$dev_pid" 2>/dev/null; then
			log "twinmail dev did not stop within 20s of SIGINT; killing it"
			kill -KILL "$dev_pid" 2>/dev/null || true
		fi
	fi
	wait "$dev_pid" 2>/dev/null || true
	dev_pid=""
	# If twinmail dev was killed, its PostgreSQL may still be running: stop it by its pid.
	local pidfile
	for pidfile in "$tmp"/dev/pg/pgdata/postmaster.pid; do
		[ -f "$pidfile" ] || continue
		local pgpid
		pgpid="$(head -n1 "$pidfile" 2>/dev/null || true)"
		if [ -n "$pgpid" ] && kill -0 "$pgpid" 2>/dev/null; then
			log "stopping leftover PostgreSQL (pid $pgpid)"
			kill -QUIT "$pgpid" 2>/dev/null || true
			sleep 1
		fi
	done
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	stop_dev
	if [ "$status" -ne 0 ] && [ -f "$tmp/dev.log" ]; then
		echo "--- twinmail dev log (last 40 lines) ---" >&2
		tail -n 40 "$tmp/dev.log" >&2 || true
	fi
	if [ "${MBSYNC_CHECK_KEEP:-}" = 1 ]; then
		log "kept $tmp"
	else
		rm -rf "$tmp"
	fi
	if [ "$status" -eq 0 ]; then
		echo "mbsync-check: PASS ($(($(date +%s) - start))s)"
	else
		echo "mbsync-check: FAIL (status $status, $(($(date +%s) - start))s)" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ $# -ge 1 ] && [ -n "$1" ]; then
	bin="$1"
	case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
	[ -x "$bin" ] || die "$bin is not an executable"
else
	bin="$tmp/twinmail"
	log "building twinmail"
	(cd "$root" && go build -o "$bin" ./cmd/twinmail) || die "go build failed"
fi

free_ports() {
	python3 - <<'PY'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Start twinmail dev; a port taken between choosing and binding it means another try.
started=""
for attempt in 1 2 3; do
	read -r imap_port lmtp_port < <(free_ports)
	log "starting twinmail dev (IMAP 127.0.0.1:$imap_port, LMTP 127.0.0.1:$lmtp_port)"
	"$bin" dev --dir "$tmp/dev" --imap "127.0.0.1:$imap_port" --lmtp "127.0.0.1:$lmtp_port" \
		>"$tmp/dev.log" 2>&1 &
	dev_pid=$!
	for _ in $(seq 1 300); do
		if ! kill -0 "$dev_pid" 2>/dev/null; then
			break
		fi
		if grep -q 'serving IMAP' "$tmp/dev.log" && grep -q 'serving LMTP' "$tmp/dev.log"; then
			started=1
			break
		fi
		sleep 0.2
	done
	[ -n "$started" ] && break
	if kill -0 "$dev_pid" 2>/dev/null; then
		die "twinmail dev did not report serving IMAP and LMTP within 60s"
	fi
	wait "$dev_pid" 2>/dev/null || true
	dev_pid=""
	grep -qi 'address already in use' "$tmp/dev.log" || die "twinmail dev exited at start"
	log "port taken, retrying"
done
[ -n "$started" ] || die "twinmail dev could not start"

maildir="$tmp/mail/"
mkdir -p "$maildir"
sed -e "s|@IMAP_PORT@|$imap_port|g" -e "s|@MAILDIR@|$maildir|g" \
	"$here/mbsyncrc.template" >"$tmp/mbsyncrc"

cat >"$tmp/check.py" <<'PY'
import email.parser, hashlib, imaplib, os, re, smtplib, socket, subprocess, sys, time

IMAP_PORT, LMTP_PORT, RC, MAILDIR = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
HOST = "127.0.0.1"
DOMAIN = "mbsync-check.twinmail.test"
FLAG_LETTER = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}

checks = 0
failures = []
mbsync_outputs = []


def ok(cond, what, detail=""):
    global checks
    checks += 1
    if cond:
        print("  ok   " + what)
    else:
        print("  FAIL " + what + (("\n         " + detail.replace("\n", "\n         ")) if detail else ""))
        failures.append(what)
    return cond


def mid(n):
    return "<%s@%s>" % (n, DOMAIN)


def make_message(name, subject, crlf):
    nl = "\r\n" if crlf else "\n"
    lines = [
        "From: Check Sender <sender@example.org>",
        "To: demo@localhost",
        "Subject: " + subject,
        "Date: Thu, 03 Dec 2026 10:00:00 +0000",
        "Message-ID: " + mid(name),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is message %s." % name,
        "A second line, so the body is more than one line.",
        "marker:%s" % name,
        "",
    ]
    return nl.join(lines).encode()


def deliver(names, folder=None):
    rcpt = "demo+%s@localhost" % folder if folder else "demo@localhost"
    s = smtplib.LMTP(HOST, LMTP_PORT)
    try:
        for n in names:
            refused = s.sendmail("sender@example.org", [rcpt], make_message(n, "server " + n, True))
            if refused:
                raise SystemExit("LMTP refused %s: %r" % (n, refused))
    finally:
        s.quit()


def imap():
    m = imaplib.IMAP4(HOST, IMAP_PORT)
    m.login("demo", "demo")
    return m


def quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def header_mid(raw):
    h = email.parser.BytesHeaderParser().parsebytes(raw)
    v = h.get("Message-ID")
    return v.strip() if v else None


def normalize(raw):
    """The text with LF line ends and without mbsync's X-TUID header."""
    raw = raw.replace(b"\r\n", b"\n")
    head, sep, body = raw.partition(b"\n\n")
    lines = [l for l in head.split(b"\n") if not l.lower().startswith(b"x-tuid:")]
    return b"\n".join(lines) + sep + body


def digest(raw):
    return hashlib.sha256(normalize(raw)).hexdigest()[:16]


def letters(flags):
    return "".join(sorted(FLAG_LETTER[f] for f in flags if f in FLAG_LETTER))


def server_folders(m):
    typ, data = m.list('""', "*")
    assert typ == "OK", (typ, data)
    names = []
    for line in data:
        if not line:
            continue
        line = line.decode() if isinstance(line, bytes) else line[0].decode()
        mo = re.match(r'\((.*?)\) (NIL|"(?:\\.|[^"])*") (.*)$', line)
        assert mo, line
        name = mo.group(3)
        if name.startswith('"'):
            name = re.sub(r'\\(.)', r'\1', name[1:-1])
        if "\\noselect" not in mo.group(1).lower():
            names.append(name)
    return sorted(names)


def server_state(m):
    """{folder: {"status": {...}, "msgs": [(uid, message-id, letters, digest)]}}"""
    state = {}
    for f in server_folders(m):
        typ, data = m.status(quote(f), "(MESSAGES UIDNEXT UIDVALIDITY)")
        assert typ == "OK", (f, typ, data)
        st = dict(re.findall(r"(MESSAGES|UIDNEXT|UIDVALIDITY) (\d+)", data[0].decode()))
        typ, data = m.select(quote(f), readonly=True)
        assert typ == "OK", (f, typ, data)
        msgs = []
        if int(data[0]) > 0:
            typ, data = m.uid("FETCH", "1:*", "(UID FLAGS)")
            assert typ == "OK", (f, typ, data)
            flags = {}
            for line in data:
                line = line.decode()
                uid = int(re.search(r"UID (\d+)", line).group(1))
                fl = re.search(r"FLAGS \(([^)]*)\)", line).group(1).split()
                flags[uid] = fl
            typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
            assert typ == "OK", (f, typ, data)
            for item in data:
                if not isinstance(item, tuple):
                    continue
                uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
                raw = item[1]
                msgs.append((uid, header_mid(raw), letters(flags.get(uid, [])), digest(raw)))
            ok(sorted(flags) == sorted(u for u, _, _, _ in msgs),
               "server %s: FLAGS and BODY[] FETCH return the same UIDs" % f,
               "FLAGS: %s\nBODY[]: %s" % (sorted(flags), sorted(u for u, _, _, _ in msgs)))
        m.unselect() if hasattr(m, "unselect") else m.close()
        state[f] = {"status": st, "msgs": sorted(msgs)}
    return state


def local_folders():
    names = []
    for dirpath, dirnames, _ in os.walk(MAILDIR):
        if os.path.isdir(os.path.join(dirpath, "cur")):
            names.append(os.path.relpath(dirpath, MAILDIR).replace(os.sep, "/"))
        dirnames[:] = [d for d in dirnames if d not in ("cur", "new", "tmp")]
    return sorted(names)


def folder_path(f):
    return os.path.join(MAILDIR, *f.split("/"))


def local_state():
    """{folder: [(subdir/filename, message-id, letters, digest)]}"""
    state = {}
    for f in local_folders():
        msgs = []
        for sub in ("new", "cur"):
            d = os.path.join(folder_path(f), sub)
            for name in sorted(os.listdir(d)):
                with open(os.path.join(d, name), "rb") as fh:
                    raw = fh.read()
                info = name.split(":2,", 1)[1] if ":2," in name else ""
                msgs.append((sub + "/" + name, header_mid(raw), "".join(sorted(info)), digest(raw)))
        state[f] = msgs
    return state


def local_find(folder, n):
    for rel, m_id, _, _ in local_state()[folder]:
        if m_id == mid(n):
            return os.path.join(folder_path(folder), rel)
    raise SystemExit("no local message %s in %s" % (n, folder))


def mbsync(label):
    t0 = time.time()
    p = subprocess.run(["mbsync", "-V", "-c", RC, "-a"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode(errors="replace")
    mbsync_outputs.append((label, out))
    ok(p.returncode == 0, "%s: mbsync -a exits 0 (%.1fs)" % (label, time.time() - t0),
       "exit status %d; output:\n%s" % (p.returncode, out))
    return out


def dups(ids):
    seen, d = set(), []
    for i in ids:
        if i in seen:
            d.append(i)
        seen.add(i)
    return sorted(d)


def compare(label, expected, srv, loc):
    """expected: {folder: {message-id: letters}} for the folders that hold mail."""
    ok(sorted(loc) == sorted(srv), "%s: Maildir folders equal the server's LIST" % label,
       "server: %s\nlocal:  %s" % (sorted(srv), sorted(loc)))
    all_srv, all_loc = [], []
    for f in sorted(set(srv) | set(loc) | set(expected)):
        exp = expected.get(f, {})
        s_msgs = srv.get(f, {"msgs": []})["msgs"]
        l_msgs = loc.get(f, [])
        all_srv += [x[1] for x in s_msgs]
        all_loc += [x[1] for x in l_msgs]
        for side, msgs in (("server", s_msgs), ("Maildir", l_msgs)):
            ids = [x[1] for x in msgs]
            problems = []
            d = dups(ids)
            if d:
                problems.append("duplicated: %s" % d)
            missing = sorted(set(exp) - set(ids))
            if missing:
                problems.append("missing: %s" % missing)
            extra = sorted(set(ids) - set(exp))
            if extra:
                problems.append("unexpected: %s" % extra)
            problems += ["%s has flags %r, want %r" % (x[1], x[2], exp[x[1]])
                         for x in msgs if x[1] in exp and x[2] != exp[x[1]]]
            if problems:
                problems.append("%s %s holds (UID or file, Message-ID, flags, text digest):" % (side, f))
                problems += [str(x) for x in msgs]
            flagged = sum(1 for v in exp.values() if v)
            ok(not problems, "%s: %s %s holds exactly the expected %d messages, once each, %d with flags"
               % (label, side, f, len(exp), flagged), "\n".join(problems))
        s_text = {x[1]: x[3] for x in s_msgs}
        diff = [x for x in l_msgs if x[1] in s_text and s_text[x[1]] != x[3]]
        if exp:
            ok(not diff, "%s: %s message text identical on both sides" % (label, f),
               "\n".join("%s differs (local %s)" % (x[1], x[0]) for x in diff))
    ok(not dups(all_srv), "%s: no Message-ID twice on the server, across folders" % label, str(dups(all_srv)))
    ok(not dups(all_loc), "%s: no Message-ID twice in the Maildir, across folders" % label, str(dups(all_loc)))


def uids(srv):
    """{(folder, message-id): [UID, ...]}"""
    r = {}
    for f, st in srv.items():
        for x in st["msgs"]:
            r.setdefault((f, x[1]), []).append(x[0])
    return r


def kept_uids(label, before, after):
    changed = [(k, before[k], after[k]) for k in before if k in after and before[k] != after[k]]
    ok(not changed, "%s: messages already on the server kept their UIDs" % label,
       "\n".join("%s: UID %s became %s" % c for c in changed))


def step(title):
    print("\n== " + title)


def finish_step(label):
    if failures:
        print("\n--- mbsync -V output of %s ---" % label)
        for l, out in mbsync_outputs:
            if l == label:
                print(out.rstrip())
        print("\nFAIL: %d of %d checks failed; first: %s" % (len(failures), checks, failures[0]))
        sys.exit(1)


m = imap()
typ, data = m.create("Lists")
assert typ == "OK", ("CREATE Lists", typ, data)
m.logout()

# expected[folder][message-id] = Maildir flag letters
expected = {"INBOX": {}, "Lists": {}}

# 1. server -> Maildir
step("1. 20 messages into INBOX and 5 into Lists over LMTP, then mbsync -a")
inbox1 = ["in-%02d" % i for i in range(20)]
lists1 = ["lists-%d" % i for i in range(5)]
deliver(inbox1)
deliver(lists1, "Lists")
for n in inbox1:
    expected["INBOX"][mid(n)] = ""
for n in lists1:
    expected["Lists"][mid(n)] = ""
mbsync("sync 1")
m = imap()
srv = server_state(m)
m.logout()
compare("sync 1", expected, srv, local_state())
uids1 = uids(srv)
finish_step("sync 1")

# 2. Maildir -> server
step("2. local changes: 3+1 new messages, one flagged+seen, one trashed, one removed; mbsync -a")
host = socket.gethostname().replace("/", "_").replace(":", "_")
local_new = {"INBOX": ["local-%d" % i for i in range(3)], "Lists": ["local-lists-0"]}
k = 0
for f, names in local_new.items():
    for n in names:
        k += 1
        fn = "%d.M%dP%dQ%d.%s" % (time.time(), k, os.getpid(), k, host)
        tmpf = os.path.join(folder_path(f), "tmp", fn)
        with open(tmpf, "wb") as fh:
            fh.write(make_message(n, "local " + n, False))
        os.rename(tmpf, os.path.join(folder_path(f), "new", fn))
        expected[f][mid(n)] = ""


def set_local_flags(folder, n, flags):
    p = local_find(folder, n)
    base = os.path.basename(p).split(":2,", 1)[0]
    os.rename(p, os.path.join(folder_path(folder), "cur", base + ":2," + flags))


set_local_flags("INBOX", "in-03", "FS")
expected["INBOX"][mid("in-03")] = "FS"
set_local_flags("INBOX", "in-04", "T")
del expected["INBOX"][mid("in-04")]
os.remove(local_find("INBOX", "in-05"))
del expected["INBOX"][mid("in-05")]
set_local_flags("Lists", "lists-1", "S")
expected["Lists"][mid("lists-1")] = "S"
mbsync("sync 2")
m = imap()
srv = server_state(m)
m.logout()
compare("sync 2", expected, srv, local_state())
kept_uids("sync 2", uids1, uids(srv))
uids2 = uids(srv)
finish_step("sync 2")

# 3. server -> Maildir, after changes over LMTP and IMAP
step("3. server changes: 5 more delivered, 2 expunged, flags set and cleared over IMAP; mbsync -a")
inbox3 = ["in-%02d" % i for i in range(20, 25)]
deliver(inbox3)
for n in inbox3:
    expected["INBOX"][mid(n)] = ""
m = imap()


def uid_of(folder, n):
    return str(uids2[(folder, mid(n))][0])


typ, data = m.select("INBOX")
assert typ == "OK", (typ, data)
for n in ("in-06", "local-1"):
    typ, data = m.uid("STORE", uid_of("INBOX", n), "+FLAGS.SILENT", "(\\Deleted)")
    ok(typ == "OK", "IMAP UID STORE +FLAGS (\\Deleted) on %s" % n, repr((typ, data)))
    del expected["INBOX"][mid(n)]
typ, data = m.expunge()
ok(typ == "OK" and len([d for d in data if d]) == 2, "IMAP EXPUNGE removes 2 messages", repr((typ, data)))
typ, data = m.uid("STORE", uid_of("INBOX", "in-08"), "+FLAGS", "(\\Flagged)")
ok(typ == "OK", "IMAP UID STORE +FLAGS (\\Flagged) on in-08", repr((typ, data)))
expected["INBOX"][mid("in-08")] = "F"
typ, data = m.uid("STORE", uid_of("INBOX", "in-03"), "-FLAGS", "(\\Flagged)")
ok(typ == "OK", "IMAP UID STORE -FLAGS (\\Flagged) on in-03", repr((typ, data)))
expected["INBOX"][mid("in-03")] = "S"
typ, data = m.select("Lists")
assert typ == "OK", (typ, data)
typ, data = m.uid("STORE", uid_of("Lists", "lists-0"), "+FLAGS", "(\\Answered)")
ok(typ == "OK", "IMAP UID STORE +FLAGS (\\Answered) on lists-0", repr((typ, data)))
expected["Lists"][mid("lists-0")] = "R"
m.logout()
mbsync("sync 3")
m = imap()
srv = server_state(m)
m.logout()
compare("sync 3", expected, srv, local_state())
kept_uids("sync 3", uids2, uids(srv))
finish_step("sync 3")

# 4. nothing to do
step("4. mbsync -a again: nothing changes on either side")
loc_before = local_state()
srv_before = srv
mbsync("sync 4")
m = imap()
srv = server_state(m)
m.logout()
loc = local_state()
ok(loc == loc_before, "sync 4: the Maildir is unchanged (file names, flags, text)",
   "before:\n%s\nafter:\n%s" % (loc_before, loc))
ok(srv == srv_before, "sync 4: the server is unchanged (UIDs, flags, text, MESSAGES, UIDNEXT, UIDVALIDITY)",
   "before:\n%s\nafter:\n%s" % (srv_before, srv))
compare("sync 4", expected, srv, loc)
for f in sorted(srv):
    ok(len({x[1] for x in srv[f]["msgs"]}) == len({x[1] for x in loc.get(f, [])}) == len(expected.get(f, {})),
       "sync 4: %s: %d Message-IDs on the server, %d in the Maildir" %
       (f, len({x[1] for x in srv[f]["msgs"]}), len({x[1] for x in loc.get(f, [])})))
finish_step("sync 4")

print("\nPASS: %d checks; INBOX %d and Lists %d messages in sync after 4 mbsync runs" %
      (checks, len(expected["INBOX"]), len(expected["Lists"])))
PY

log "running the mbsync scenario"
python3 "$tmp/check.py" "$imap_port" "$lmtp_port" "$tmp/mbsyncrc" "$maildir" || exit 1
