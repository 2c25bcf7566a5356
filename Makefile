# ravelin - anti-spam SMTP proxy.
#
#   make               build build/ravelin and build/ravelinctl
#   make deps          install build and test dependencies (Debian 12, apt-get)
#   make check         build and run unit and end-to-end tests
#   make check-san     the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench         benchmarks (prints figures)
#   make MALLOC=libc   glibc's malloc instead of jemalloc
#   make fuzz          libFuzzer targets (clang)
#   make install       PREFIX=/usr/local DESTDIR=
#   make run           demo: ravelin in front of a local smtp-sink, one message through it

PREFIX   ?= /usr/local
SBINDIR  ?= $(PREFIX)/sbin
MANDIR   ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR  ?= $(PREFIX)/lib/systemd/system
DOCDIR   ?= $(PREFIX)/share/doc/ravelin
DESTDIR  ?=

# MALLOC: jemalloc (as Redis does; glibc's malloc and free were about a
# sixth of ravelin's own CPU per message) or libc. The sanitizer build
# always uses libc's: ASan brings its own allocator.
SAN      ?=
ifeq ($(SAN),1)
BUILD    ?= build-san
SANFLAGS  = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT       = -O1
MALLOC    = libc
else
BUILD    ?= build
SANFLAGS  =
OPT       = -O2
MALLOC   ?= jemalloc
endif
ifeq ($(MALLOC),jemalloc)
MALLOCLIB = -ljemalloc
else
MALLOCLIB =
endif

PKGS     = libevent libevent_pthreads libevent_openssl openssl libpcre2-8 \
           milter hiredis libunbound libpsl
CC       ?= cc
CPPFLAGS += -Iinclude -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS))
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -pthread $(SANFLAGS)
LDFLAGS  += -pthread $(SANFLAGS)
LDLIBS   += $(shell pkg-config --libs $(PKGS)) -lspf2 -lopendmarc -lcrypt $(MALLOCLIB) -lpthread
TESTLIBS  = $(shell pkg-config --libs cmocka)

MAINS    = src/main.c src/ravelinctl.c
LIBSRC   = $(filter-out $(MAINS),$(sort $(wildcard src/*.c)))
LIBOBJ   = $(LIBSRC:src/%.c=$(BUILD)/obj/%.o)
UNITSRC  = $(sort $(wildcard tests/unit/test_*.c))
UNITBIN  = $(UNITSRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOLSRC  = $(sort $(wildcard tests/tools/*.c))
TOOLBIN  = $(TOOLSRC:tests/tools/%.c=$(BUILD)/tools/%)

.PHONY: all deps check check-san check-valgrind unit e2e bench fuzz install run clean format

all: $(BUILD)/ravelin $(BUILD)/ravelinctl

$(BUILD)/obj/%.o: src/%.c $(wildcard include/*.h) | $(BUILD)/obj
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj $(BUILD)/tests $(BUILD)/tools:
	mkdir -p $@

$(BUILD)/libravelin.a: $(LIBOBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/ravelin: $(BUILD)/obj/main.o $(BUILD)/libravelin.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/ravelinctl: $(BUILD)/obj/ravelinctl.o $(BUILD)/libravelin.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The DKIM differential test also builds libopendkim's reference verifier.
$(BUILD)/tests/test_dkim_diff: tests/unit/test_dkim_diff.c tests/unit/dkim_oracle.c \
  tests/unit/dkim_oracle.h $(BUILD)/libravelin.a $(wildcard include/*.h) | $(BUILD)/tests
	$(CC) $(CPPFLAGS) $(shell pkg-config --cflags opendkim) $(CFLAGS) $(LDFLAGS) -o $@ $< \
	  tests/unit/dkim_oracle.c $(BUILD)/libravelin.a $(TESTLIBS) $(LDLIBS) \
	  $(shell pkg-config --libs opendkim)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libravelin.a $(wildcard include/*.h) | $(BUILD)/tests
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libravelin.a $(TESTLIBS) $(LDLIBS)

$(BUILD)/tools/%: tests/tools/%.c $(BUILD)/libravelin.a $(wildcard include/*.h) | $(BUILD)/tools
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libravelin.a $(LDLIBS)

deps:
	sh tests/deps.sh

check: all $(UNITBIN) $(TOOLBIN)
	BUILD=$(BUILD) sh tests/run.sh

check-san:
	$(MAKE) SAN=1 check

check-valgrind: all $(UNITBIN) $(TOOLBIN)
	BUILD=$(BUILD) VALGRIND=1 sh tests/run.sh

unit: $(UNITBIN)
	BUILD=$(BUILD) ONLY=unit sh tests/run.sh

e2e: all $(TOOLBIN)
	BUILD=$(BUILD) ONLY=e2e sh tests/run.sh

bench: all
	BUILD=$(BUILD) sh tests/bench/run.sh

fuzz:
	$(MAKE) -f tests/fuzz/Makefile

run: all
	BUILD=$(BUILD) sh tests/demo.sh

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(SYSCONFDIR)/ravelin/rules $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 $(BUILD)/ravelin $(BUILD)/ravelinctl $(DESTDIR)$(SBINDIR)/
	install -m 0644 doc/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 doc/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 README.md doc/*.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 etc/ravelin.conf $(DESTDIR)$(SYSCONFDIR)/ravelin/ravelin.conf.sample
	sed 's|/usr/sbin/|$(SBINDIR)/|g; s|/etc/ravelin/|$(SYSCONFDIR)/ravelin/|g' etc/ravelin.service \
	  >$(DESTDIR)$(UNITDIR)/ravelin.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/ravelin.service
	@# Configuration and rules are the operator's: never overwrite them.
	@set -e; for f in etc/ravelin.conf rules/*.rules; do \
	  case $$f in etc/*) d=$(DESTDIR)$(SYSCONFDIR)/ravelin/$${f#etc/};; *) d=$(DESTDIR)$(SYSCONFDIR)/ravelin/$$f;; esac; \
	  [ -f "$$f" ] || continue; \
	  if [ -e "$$d" ]; then echo "install: keeping $$d (new version: $$f)"; \
	  else echo "install -m 0644 $$f $$d"; install -m 0644 "$$f" "$$d"; fi; \
	done

format:
	clang-format -i src/*.c include/*.h tests/unit/*.c

clean:
	rm -rf build build-san

# Static analysis with cppcheck and clang-tidy (settings in .cppcheck and
# .clang-tidy). Findings are printed and counted; the tree is not clean
# yet, so they fail the target only with LINT_STRICT=1.
.PHONY: lint
lint:
	@mkdir -p $(BUILD)/lint; rm -f $(BUILD)/lint/*; \
	cppcheck --enable=warning,performance,portability --inline-suppr \
	  --suppressions-list=.cppcheck \
	  --include=/usr/include/x86_64-linux-gnu/sys/queue.h \
	  -Iinclude --quiet -j2 src/ > $(BUILD)/lint/cppcheck.txt 2>&1; \
	cat $(BUILD)/lint/cppcheck.txt; \
	ls src/*.c | xargs -P2 -I{} sh -c \
	  'clang-tidy --quiet {} -- $(CPPFLAGS) > $(BUILD)/lint/$$(basename {}).tidy 2>/dev/null'; \
	cat $(BUILD)/lint/*.tidy; \
	n=$$(cat $(BUILD)/lint/cppcheck.txt $(BUILD)/lint/*.tidy | \
	  grep -cE ': (warning|error|performance|portability|style):'); \
	echo "lint: $$n finding(s)"; \
	if [ "$$n" -gt 0 ] && [ "$(LINT_STRICT)" = 1 ]; then exit 1; fi
