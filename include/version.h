/* version.h - ravelin's version. */
#ifndef RAVELIN_VERSION_H
#define RAVELIN_VERSION_H
#define RAVELIN_VERSION "0.1.0"
#endif
