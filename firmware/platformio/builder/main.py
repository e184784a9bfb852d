"""SCons script of the edgesketch bare-metal dev-platform: compile src/ and lib/ with a cross compiler found on
PATH, link with the board's linker script. Every setting comes from the project's platformio.ini (rendered from
boards/<name>.toml by edgesketch.build):

  custom_toolchain      compiler prefix, e.g. arm-none-eabi-
  custom_toolchain_apt  the Debian package(s) that provide it (named in the error if it is missing)
  custom_cpu_flags      -mcpu/-march/-mabi and C-library -specs: used to compile, assemble and link
  custom_c_flags        C-only flags (optimisation)
  custom_link_flags     extra link flags (C library specs)
  board_build.ldscript  linker script, relative to the project; its folder is on the linker's search path (INCLUDE)
  custom_libs           libraries linked after the objects (e.g. gcc, with -nostdlib in custom_link_flags)

An emulated board with the Arduino entry instead names a Debian package holding an Arduino core (Arduino's own AVR
core in arduino-core-avr) and a board of its boards.txt:

  custom_arduino_core   the Debian package, e.g. arduino-core-avr; its folder is the one of its platform.txt
                        (dpkg -L), so the build uses the core exactly as Debian installed it
  custom_arduino_board  the board id in boards.txt, e.g. uno

The core (cores/<build.core>, every .c, .cpp and .S) becomes a library, and it, src/ and lib/ compile with the flags
of the core's own platform.txt recipes for that board (recipe.c.o.pattern, recipe.cpp.o.pattern, recipe.S.o.pattern,
with {build.mcu}, {build.f_cpu}, ... from boards.txt), and link with recipe.c.combine.pattern's flags and -lm, as the
Arduino IDE builds it. No linker script: the toolchain's default for the MCU (avr-libc's crt and vectors).
"""
import os
import re
import shlex
import shutil
import subprocess
import sys

from SCons.Script import Default, DefaultEnvironment  # pylint: disable=import-error

env = DefaultEnvironment()


def opt(name, default=""):
    return env.GetProjectOption(name, default)


prefix = opt("custom_toolchain")
if not prefix:
    sys.stderr.write("Error: custom_toolchain (compiler prefix) is not set in platformio.ini\n")
    env.Exit(1)
if not shutil.which(prefix + "gcc"):
    sys.stderr.write("Error: %sgcc is not on PATH: apt-get install %s\n"
                     % (prefix, opt("custom_toolchain_apt", "the cross compiler")))
    env.Exit(1)

env.Replace(
    AR=prefix + "gcc-ar",
    AS=prefix + "gcc",
    CC=prefix + "gcc",
    CXX=prefix + "g++",
    LINK=prefix + "gcc",
    OBJCOPY=prefix + "objcopy",
    RANLIB=prefix + "gcc-ranlib",
    SIZETOOL=prefix + "size",
    PROGNAME="firmware",
    PROGSUFFIX=".elf",
)


def fail(msg):
    sys.stderr.write("Error: %s\n" % msg)
    env.Exit(1)


def arduino_core_dir(package):
    """The folder of the Debian package's platform.txt (dpkg -L); exits with the apt-get line if it is missing."""
    try:
        files = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        files = []
    found = sorted(f for f in files if f.endswith("/platform.txt"))
    if not found:
        fail("the Arduino core package %s is not installed: apt-get install %s" % (package, package))
    return os.path.dirname(found[0])


def read_properties(path, prefix=""):
    """key=value lines of an Arduino platform.txt / boards.txt; with prefix, only keys under it, prefix removed."""
    props = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            if key.startswith(prefix):
                props[key[len(prefix):]] = value
    return props


def expand(text, props, depth=0):
    """{name} references replaced from props, recursively (unknown names are kept as they are)."""
    if depth > 20:
        fail("Arduino property references nest too deeply: %s" % text)
    out = re.sub(r"\{([^{}]+)\}", lambda m: props.get(m.group(1), m.group(0)), text)
    return out if out == text else expand(out, props, depth + 1)


def recipe_flags(recipe, props):
    """The flags of one Arduino compile or link recipe: the command, -c, -MMD, the includes, the source and the
    output (SCons supplies them) removed."""
    drop = {"{includes}", "{source_file}", "{object_files}", "-c", "-MMD", "-lm"}
    words = shlex.split(expand(recipe, props))[1:]
    flags, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w == "-o":
            skip = True
        elif w not in drop and "{" not in w and not w.startswith("-L"):
            flags.append(w)
    return flags


def configure_arduino(package, board):
    core = arduino_core_dir(package)
    props = read_properties(os.path.join(core, "platform.txt"))
    build = read_properties(os.path.join(core, "boards.txt"), board + ".")
    if "build.mcu" not in build:
        fail("board %s is not in %s" % (board, os.path.join(core, "boards.txt")))
    props.update(build)
    props.update({"runtime.ide.version": opt("custom_arduino_ide_version", "10819"),
                  "build.arch": os.path.basename(core).upper(), "compiler.path": ""})
    props["compiler.warning_flags"] = props.get("compiler.warning_flags", "-w")
    c = recipe_flags(props["recipe.c.o.pattern"], props)
    cpp = recipe_flags(props["recipe.cpp.o.pattern"], props)
    asm = recipe_flags(props["recipe.S.o.pattern"], props)
    link = recipe_flags(props["recipe.c.combine.pattern"], props)
    common = [f for f in c if f in cpp]
    core_src = os.path.join(core, "cores", props["build.core"])
    variant = os.path.join(core, "variants", props["build.variant"])
    env.Append(
        CCFLAGS=common,
        CFLAGS=[f for f in c if f not in common],
        CXXFLAGS=[f for f in cpp if f not in common],
        ASFLAGS=asm,
        CPPPATH=[core_src, variant],
        # gcc-avr 5.4's <float.h> defines DECIMAL_DIG for C99 only, not for C++11 (GCC 6 and later do both), and the
        # core's WString.cpp needs it: give C++ the value C gets
        CPPDEFINES=[("DECIMAL_DIG", "__DECIMAL_DIG__")],
        LINKFLAGS=link + ["-Wl,-Map,${BUILD_DIR}/firmware.map"],
        LIBS=["m"],
    )
    # one object per source named after the whole file name, as the Arduino IDE does (wiring_pulse.c and
    # wiring_pulse.S would both be wiring_pulse.o)
    objs = [env.Object(os.path.join("$BUILD_DIR", "ArduinoCore", name + ".o"), os.path.join(core_src, name))
            for name in sorted(os.listdir(core_src)) if os.path.splitext(name)[1] in (".c", ".cpp", ".S")]
    env.Prepend(LIBS=[env.StaticLibrary(os.path.join("$BUILD_DIR", "ArduinoCore"), objs)])


core_package = opt("custom_arduino_core")
if core_package:
    configure_arduino(core_package, opt("custom_arduino_board"))
else:
    cpu = opt("custom_cpu_flags").split()
    ldscript = opt("board_build.ldscript")
    if not ldscript:
        fail("board_build.ldscript is not set in platformio.ini")
    ldscript = os.path.join(env.subst("$PROJECT_DIR"), ldscript)
    env.Replace(LDSCRIPT_PATH=ldscript)
    env.Append(
        ASFLAGS=cpu,
        ASPPFLAGS=["-x", "assembler-with-cpp"],   # SCons: ASPPFLAGS starts as $ASFLAGS
        CCFLAGS=cpu + ["-g", "-ffunction-sections", "-fdata-sections"],
        CFLAGS=opt("custom_c_flags").split(),
        LINKFLAGS=cpu + ["-nostartfiles", "-Wl,--gc-sections", "-Wl,-Map,${BUILD_DIR}/firmware.map"]
        + opt("custom_link_flags").split(),
        LIBPATH=[os.path.dirname(ldscript)],
        LIBS=opt("custom_libs").split(),
    )

elf = env.BuildProgram()
env.AddPlatformTarget("size", elf, env.VerboseAction("$SIZETOOL $SOURCES", "Program size"), "Program Size")
Default(elf)
