/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The drivers' wait lists: treqs in arrival order, linked through
 * t->next (see driver.h: "Waiting").
 */
#ifndef TD_TREQ_LIST_H
#define TD_TREQ_LIST_H

#include <stdbool.h>
#include <stddef.h>

#include "driver.h"

struct tlist {
	struct td_treq	*head, *tail;
};

static inline void tl_push(struct tlist *l, struct td_treq *t)
{
	t->next = NULL;
	if (l->tail)
		l->tail->next = t;
	else
		l->head = t;
	l->tail = t;
}

static inline struct td_treq *tl_pop(struct tlist *l)
{
	struct td_treq *t = l->head;

	if (t) {
		l->head = t->next;
		if (!l->head)
			l->tail = NULL;
		t->next = NULL;
	}
	return t;
}

/* Detach the whole list (callers walk it with tl_pop on the copy). */
static inline struct tlist tl_take(struct tlist *l)
{
	struct tlist out = *l;

	l->head = l->tail = NULL;
	return out;
}

static inline bool tl_empty(const struct tlist *l)
{
	return !l->head;
}

/* Resume every treq of @l, in order; @l is empty before the first runs. */
static inline void tl_resume_all(struct tlist *l)
{
	struct tlist list = tl_take(l);
	struct td_treq *t;

	while ((t = tl_pop(&list)))
		td_treq_resume(t);
}

#endif
