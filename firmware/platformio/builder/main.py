"""SCons script of the edgesketch bare-metal dev-platform: compile src/ and lib/ with a cross compiler found on
PATH, link with the board's linker script. Every setting comes from the project's platformio.ini (rendered from
boards/<name>.toml by edgesketch.build):

  custom_toolchain      compiler prefix, e.g. arm-none-eabi-
  custom_toolchain_apt  the Debian package(s) that provide it (named in the error if it is missing)
  custom_cpu_flags      -mcpu/-march/-mabi and C-library -specs: used to compile, assemble and link
  custom_c_flags        C-only flags (optimisation)
  custom_link_flags     extra link flags (C library specs)
  board_build.ldscript  linker script, relative to the project; its folder is on the linker's search path (INCLUDE)
"""
import os
import shutil
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

cpu = opt("custom_cpu_flags").split()
ldscript = opt("board_build.ldscript")
if not ldscript:
    sys.stderr.write("Error: board_build.ldscript is not set in platformio.ini\n")
    env.Exit(1)
ldscript = os.path.join(env.subst("$PROJECT_DIR"), ldscript)

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
    LDSCRIPT_PATH=ldscript,
)
env.Append(
    ASFLAGS=cpu,
    ASPPFLAGS=["-x", "assembler-with-cpp"],   # SCons: ASPPFLAGS starts as $ASFLAGS
    CCFLAGS=cpu + ["-g", "-ffunction-sections", "-fdata-sections"],
    CFLAGS=opt("custom_c_flags").split(),
    LINKFLAGS=cpu + ["-nostartfiles", "-Wl,--gc-sections", "-Wl,-Map,${BUILD_DIR}/firmware.map"]
    + opt("custom_link_flags").split(),
    LIBPATH=[os.path.dirname(ldscript)],
)

elf = env.BuildProgram()
env.AddPlatformTarget("size", elf, env.VerboseAction("$SIZETOOL $SOURCES", "Program size"), "Program Size")
Default(elf)
