/*
 * admin_page.c - the operators' status page (admin.h), embedded from
 * src/admin_page.html: make writes its bytes as a C list into
 * admin_page_data.inc (Makefile.am), so the page is edited as HTML.
 */
#include <stddef.h>

#include "admin.h"

const unsigned char agw_admin_page[] = {
#include "src/admin_page_data.inc"
    0};

const size_t agw_admin_page_len = sizeof(agw_admin_page) - 1;
